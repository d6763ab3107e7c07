"""Order edits and line cancellations, six processes on real Kafka and Postgres, the driver playing channel and
locations: a cancelled line is released alone, the customer told, and the location ships the rest (paid for as
edited); a quantity raised is reserved and re-sourced; a new address re-routes; an edit after picking, or beyond
the stock, is refused with nothing changed."""

from decimal import Decimal

import pytest

from ops import cli
from ops.demo import address
from ops.waiting import eventually
from shared.contracts.common import Line, ShipTo
from shared.contracts.fulfillment import (
    FulfillmentOrderAmended,
    FulfillmentRequested,
    FulfillmentWithdrawn,
    LocationUpdate,
    ShipmentConfirmed,
)
from shared.contracts.orders import CancelOrderLines, EditOrder, OrderConfirmed, OrderEdited, OrderEditRefused
from shared.contracts.payments import Authorization

from ..support.topics import of_type
from .conftest import BERLIN, FRANKFURT, Driver

pytestmark = pytest.mark.e2e


async def placed(driver: Driver, lines: list[tuple[str, int]], **kwargs) -> tuple:
    """A paid order, sent and taken on by its location: (order, order id, its work item)."""
    order = driver.order(lines, **kwargs)
    order = order.model_copy(update={"payment": Authorization(provider="psp", reference="auth-e",
                                                              amount=order.computed_totals().total)})
    order_id = driver.order_id(order)
    await driver.channel.send(order)
    await driver.orders.wait_for(of_type(OrderConfirmed, order_id))
    [work] = await driver.work.wait_for(of_type(FulfillmentRequested, order_id))
    return order, order_id, work


def keys(order) -> dict:
    return {"channel": order.channel, "channel_order_id": order.channel_order_id}


async def held_units(driver: Driver, sku: str) -> tuple[int, int]:
    """(reserved in the network, allocated at its locations) of a SKU."""
    return (await driver.count("SELECT reserved FROM inventory.sku_stock WHERE sku = $1", sku),
            await driver.count("SELECT coalesce(sum(allocated), 0) FROM inventory.location_stock WHERE sku = $1", sku))


async def test_a_cancelled_line_is_released_alone_and_the_location_ships_the_rest_at_the_edited_price(
        driver, payments, capsys):
    location, kept, dropped = driver.unique("WH"), driver.unique("KEEP"), driver.unique("DROP")
    await driver.location(location, FRANKFURT)
    await driver.stock(kept, location, 5)
    await driver.stock(dropped, location, 5)
    order, order_id, work = await placed(driver, [(kept, 2), (dropped, 1)])
    cancel = CancelOrderLines(**keys(order), edit_id="E-1", lines=[Line(sku=dropped, quantity=1)])
    await driver.channel.send(cancel)

    [edited] = await driver.orders.wait_for(of_type(OrderEdited, order_id))
    assert edited["data"]["removed"] == [{"sku": dropped, "quantity": 1}]
    [amended] = await driver.work.wait_for(of_type(FulfillmentOrderAmended, order_id))
    assert amended["data"]["lines"] == [{"sku": kept, "quantity": 2}]
    await eventually(lambda: _units_are(driver, dropped, (0, 0)), what="the cancelled line released")
    assert await held_units(driver, kept) == (2, 2)
    new_total = Decimal(edited["data"]["totals"]["total"])
    assert new_total == Decimal(edited["data"]["amount_due"]) < order.computed_totals().total
    await eventually(lambda: _authorised(driver, order_id, new_total), what="the authorisation adjusted")
    await eventually(lambda: _tracked_as_authorised(driver, order_id, new_total),
                     what="the tracking view's authorisation adjusted")
    await eventually(lambda: driver.db.fetchval("SELECT 1 FROM notification.notifications WHERE order_id = $1 "
                                                "AND kind = 'order_edited'", order_id), what="the customer told")

    await driver.channel.send(cancel)  # asked again: the same answer, nothing more
    await driver.orders.wait_for(of_type(OrderEdited, order_id), count=2)
    assert len(driver.work.envelopes(of_type(FulfillmentOrderAmended, order_id))) == 1

    ids = {"fulfillment_order_id": work["data"]["fulfillment_order_id"], "order_id": order_id}
    await driver.channel.send(LocationUpdate(**ids, status="shipped", carrier="DHL", tracking_number="E1"))
    [shipment] = await driver.erp.wait_for(of_type(ShipmentConfirmed, order_id))
    assert shipment["data"]["lines"] == [{"sku": kept, "quantity": 2}]
    assert Decimal(shipment["data"]["amounts"]["total"]) == new_total
    await driver.status(order_id, "shipped")
    await eventually(lambda: _captured(driver, order_id, new_total), what="the shipment paid")
    assert await cli.show_order(f"{order.channel}/{order.channel_order_id}") == 0
    shown = capsys.readouterr().out
    assert f"money total {new_total} EUR  authorised {new_total}  captured {new_total}" in shown
    assert f"applied: now {new_total}" in shown.split("edits:")[1].split("E-1")[1].splitlines()[0]


async def test_an_edit_after_the_location_picked_is_refused_and_changes_nothing(driver):
    sku = await driver.stocked_sku(5)
    order, order_id, work = await placed(driver, [(sku, 2)])
    ids = {"fulfillment_order_id": work["data"]["fulfillment_order_id"], "order_id": order_id}
    await driver.channel.send(LocationUpdate(**ids, status="picked"))
    await eventually(lambda: driver.db.fetchval("SELECT status = 'picked' FROM fulfillment.fulfillment_orders "
                                                "WHERE fulfillment_order_id = $1", ids["fulfillment_order_id"]),
                     what="picked")
    await driver.channel.send(CancelOrderLines(**keys(order), edit_id="E-1", lines=[Line(sku=sku, quantity=1)]))
    [refused] = await driver.orders.wait_for(of_type(OrderEditRefused, order_id))
    assert refused["data"]["reason"]["code"] == "ALREADY_PICKED"
    assert await held_units(driver, sku) == (2, 2)
    assert await driver.db.fetchval("SELECT state FROM capture.order_sagas WHERE order_id = $1",
                                    order_id) == "awaiting_shipment"


async def test_a_raised_quantity_is_reserved_and_sourced_and_one_beyond_the_stock_is_refused(driver):
    sku = await driver.stocked_sku(4)
    order, order_id, work = await placed(driver, [(sku, 1)])
    line = order.lines[0]
    await driver.channel.send(EditOrder(**keys(order), edit_id="MORE", lines=[line.model_copy(update={"quantity": 3})]))
    [edited] = await driver.orders.wait_for(of_type(OrderEdited, order_id))
    assert edited["data"]["added"] == [{"sku": sku, "quantity": 2}]
    await driver.work.wait_for(of_type(FulfillmentWithdrawn, order_id))
    [_, again] = await driver.work.wait_for(of_type(FulfillmentRequested, order_id), count=2)
    assert again["data"]["lines"] == [{"sku": sku, "quantity": 3}]
    assert again["data"]["fulfillment_order_id"] != work["data"]["fulfillment_order_id"]  # a new one, same location
    await eventually(lambda: _units_are(driver, sku, (3, 3)), what="three units held and pinned")

    await driver.channel.send(EditOrder(**keys(order), edit_id="TOO-MANY",
                                        lines=[line.model_copy(update={"quantity": 9})]))
    [refused] = await driver.orders.wait_for(of_type(OrderEditRefused, order_id))
    assert refused["data"]["reason"]["code"] == "OUT_OF_STOCK"
    assert await held_units(driver, sku) == (3, 3)


async def test_a_new_address_reroutes_the_order_to_the_location_nearest_to_it(driver):
    frankfurt, berlin, sku = driver.unique("WH-F"), driver.unique("WH-B"), driver.unique("SKU")
    await driver.location(frankfurt, FRANKFURT)
    await driver.location(berlin, BERLIN)
    await driver.stock(sku, frankfurt, 3)
    await driver.stock(sku, berlin, 3)
    order, order_id, work = await placed(driver, [(sku, 1)], city="Frankfurt")
    assert work["data"]["location_id"] == frankfurt

    await driver.channel.send(EditOrder(**keys(order), edit_id="MOVED", delivery=ShipTo(address=address("Berlin"))))
    [edited] = await driver.orders.wait_for(of_type(OrderEdited, order_id))
    assert edited["data"]["rerouted"]
    [withdrawn] = await driver.work.wait_for(of_type(FulfillmentWithdrawn, order_id))
    assert withdrawn["data"]["location_id"] == frankfurt
    [_, moved] = await driver.work.wait_for(of_type(FulfillmentRequested, order_id), count=2)
    assert moved["data"]["location_id"] == berlin
    assert moved["data"]["delivery"]["address"]["city"] == "Berlin"
    await eventually(lambda: driver.db.fetchval(
        "SELECT allocated = 1 FROM inventory.location_stock WHERE sku = $1 AND location_id = $2", sku, berlin),
        what="the unit pinned in Berlin")
    assert await driver.count("SELECT allocated FROM inventory.location_stock WHERE sku = $1 AND location_id = $2",
                              sku, frankfurt) == 0


async def _units_are(driver: Driver, sku: str, expected: tuple[int, int]) -> bool:
    return await held_units(driver, sku) == expected


async def _authorised(driver: Driver, order_id, amount: Decimal) -> bool:
    authorised = await driver.db.fetchval("SELECT placed->'payment'->>'amount' FROM capture.orders "
                                          "WHERE order_id = $1", order_id)
    return Decimal(authorised) == amount


async def _captured(driver: Driver, order_id, amount: Decimal) -> bool:
    return await driver.db.fetchval("SELECT coalesce(sum((c->>1)::numeric), 0) FROM capture.order_sagas, "
                                    "jsonb_array_elements(captures) c WHERE order_id = $1", order_id) == amount


async def _tracked_as_authorised(driver: Driver, order_id, amount: Decimal) -> bool:
    authorised = await driver.db.fetchval("SELECT view->'payment'->>'authorised' FROM tracking.orders "
                                          "WHERE order_id = $1", order_id)
    return authorised is not None and Decimal(authorised) == amount
