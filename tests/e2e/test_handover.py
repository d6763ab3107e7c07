"""The last mile, five processes: a pickup order is ready at the store, then collected (complete only then), or
not collected and cancelled with its stock back on the shelf, or rejected in store (cancelled, never sent
elsewhere); a shipment is delivered."""

import asyncpg
import pytest

from ops.client import client
from ops.waiting import eventually
from shared.contracts.common import Line
from shared.contracts.fulfillment import (
    DeliveryConfirmed,
    FulfillmentRejected,
    FulfillmentRequested,
    FulfillmentWithdrawn,
    LocationUpdate,
    PickupCompleted,
    PickupExpired,
    ShipmentConfirmed,
)
from shared.contracts.orders import (
    OrderCancelled,
    OrderDelivered,
    OrderLinesCancelled,
    OrderPickedUp,
    OrderReadyForPickup,
    OrderShipped,
)
from shared.contracts.topics import FULFILLMENT_EVENTS, FULFILLMENT_WORK, ORDER_EVENTS

from ..support.stack import stack
from ..support.topics import TopicWatcher, of_type
from .conftest import FRANKFURT, Driver


async def pickup_order(driver: Driver, units_in_store: int = 2) -> tuple:
    store, sku = driver.unique("ST"), driver.unique("SKU")
    await driver.location(store, FRANKFURT, kind="store", ships_to_customers=False, accepts_pickup=True)
    await driver.stock(sku, store, units_in_store)
    order = driver.order([(sku, 1)], pickup_store=store)
    await driver.channel.send(order)
    order_id = driver.order_id(order)
    [work] = await driver.work.wait_for(of_type(FulfillmentRequested, order_id))
    ids = {"fulfillment_order_id": work["data"]["fulfillment_order_id"], "order_id": order_id}
    return store, sku, order_id, ids


async def test_a_pickup_order_is_complete_when_the_customer_collects_it_not_when_it_is_ready(driver):
    store, sku, order_id, ids = await pickup_order(driver)
    await driver.channel.send(LocationUpdate(**ids, status="ready_for_pickup"))
    await driver.orders.wait_for(of_type(OrderReadyForPickup, order_id))
    assert await driver.status(order_id, "ready_for_pickup") == "ready_for_pickup"
    assert await reservation(driver, order_id) == "allocated"  # still the store's, not yet sold
    assert not driver.erp.envelopes(of_type(PickupCompleted, order_id))
    await told(driver, order_id, "order_ready_for_pickup")

    await driver.channel.send(LocationUpdate(**ids, status="picked_up"))
    [completed] = await driver.erp.wait_for(of_type(PickupCompleted, order_id))
    assert completed["data"]["lines"] == [{"sku": sku, "quantity": 1}] and completed["data"]["location_id"] == store
    await driver.orders.wait_for(of_type(OrderPickedUp, order_id))
    await driver.status(order_id, "picked_up")
    await reservation(driver, order_id, "committed")
    assert await driver.count("SELECT on_hand FROM inventory.location_stock WHERE sku = $1 AND location_id = $2",
                              sku, store) == 1
    await told(driver, order_id, "order_picked_up")


async def test_a_pickup_order_rejected_in_store_is_cancelled_not_sent_to_another_location(driver):
    store, sku, order_id, ids = await pickup_order(driver)
    elsewhere = driver.unique("WH")
    await driver.location(elsewhere, FRANKFURT)
    await driver.stock(sku, elsewhere, 5)
    await driver.channel.send(LocationUpdate(**ids, status="rejected", reason="DAMAGED"))

    [cancelled] = await driver.orders.wait_for(of_type(OrderCancelled, order_id))
    assert cancelled["data"]["reason"] == {"code": "PICKUP_REJECTED", "detail": "DAMAGED"}
    await reservation(driver, order_id, "released")
    assert len(driver.work.envelopes(of_type(FulfillmentRequested, order_id))) == 1  # no second location asked


async def test_a_shipment_is_delivered_and_the_customer_told(driver):
    sku = await driver.stocked_sku(1)
    order = driver.order([(sku, 1)])
    order_id = driver.order_id(order)
    await driver.channel.send(order)
    [work] = await driver.work.wait_for(of_type(FulfillmentRequested, order_id))
    ids = {"fulfillment_order_id": work["data"]["fulfillment_order_id"], "order_id": order_id}
    await driver.channel.send(LocationUpdate(**ids, status="shipped", carrier="DHL", tracking_number="D1"))
    await driver.status(order_id, "shipped")
    await driver.channel.send(LocationUpdate(**ids, status="ready_for_pickup"))  # not a step of a shipment
    await driver.channel.send(LocationUpdate(**ids, status="delivered"))

    await driver.erp.wait_for(of_type(DeliveryConfirmed, order_id))
    await driver.orders.wait_for(of_type(OrderDelivered, order_id))
    await driver.status(order_id, "delivered")
    await told(driver, order_id, "order_delivered")
    [letter] = await driver.dead_letters.wait_for(
        lambda e: "ready_for_pickup is not a step of a ship" in e["data"].get("detail", ""))
    assert letter["data"]["reason"] == "WRONG_DELIVERY_STEP"


async def shipment_order(driver: Driver, units: int) -> tuple:
    sku = await driver.stocked_sku(units)
    order = driver.order([(sku, units)])
    order_id = driver.order_id(order)
    await driver.channel.send(order)
    [work] = await driver.work.wait_for(of_type(FulfillmentRequested, order_id))
    ids = {"fulfillment_order_id": work["data"]["fulfillment_order_id"], "order_id": order_id}
    return sku, work["data"]["location_id"], order_id, ids


async def stock_at(driver: Driver, sku: str, location: str) -> tuple[int, int]:
    row = await driver.db.fetchrow("SELECT on_hand, allocated FROM inventory.location_stock "
                                   "WHERE sku = $1 AND location_id = $2", sku, location)
    return row["on_hand"], row["allocated"]


async def test_an_order_ships_in_two_parcels_each_one_reported_and_committed_once(driver):
    sku, location, order_id, ids = await shipment_order(driver, 3)
    first = LocationUpdate(**ids, status="shipped", carrier="DHL", tracking_number="P1",
                           lines=[Line(sku=sku, quantity=1)])
    await driver.channel.send(first)
    await driver.channel.send(first.model_copy())  # the same parcel reported again (a new message id)
    [shipment] = await driver.erp.wait_for(of_type(ShipmentConfirmed, order_id))
    assert (shipment["data"]["lines"], shipment["data"]["complete"]) == ([{"sku": sku, "quantity": 1}], False)
    await driver.status(order_id, "partially_shipped")
    await eventually(lambda: _is(stock_at(driver, sku, location), (2, 2)), what="one unit out of stock")
    over = LocationUpdate(**ids, status="shipped", carrier="DHL", tracking_number="P9",
                          lines=[Line(sku=sku, quantity=5)])
    await driver.channel.send(over)
    [letter] = await driver.dead_letters.wait_for(lambda e: "shipment of 5" in e["data"].get("detail", ""))
    assert letter["data"]["reason"] == "OVER_SHIPPED"

    await driver.channel.send(LocationUpdate(**ids, status="shipped", carrier="UPS", tracking_number="P2"))
    shipments = await driver.erp.wait_for(of_type(ShipmentConfirmed, order_id), count=2)
    assert [(s["data"]["tracking_number"], s["data"]["lines"][0]["quantity"], s["data"]["complete"])
            for s in shipments] == [("P1", 1, False), ("P2", 2, True)]
    await driver.status(order_id, "shipped")
    await reservation(driver, order_id, "committed")
    assert await stock_at(driver, sku, location) == (0, 0)
    assert len(await driver.orders.wait_for(of_type(OrderShipped, order_id), count=2)) == 2
    await eventually(lambda: driver.count("SELECT count(*) = 2 FROM notification.notifications "
                                          "WHERE order_id = $1 AND kind = 'order_shipped'", order_id),
                     what="the customer told of each parcel")
    assert len(driver.erp.envelopes(of_type(ShipmentConfirmed, order_id))) == 2


async def test_a_short_pick_ships_what_it_can_and_cancels_only_the_rest(driver):
    sku, location, order_id, ids = await shipment_order(driver, 2)
    await driver.channel.send(LocationUpdate(**ids, status="shipped", carrier="DHL", tracking_number="S1",
                                             lines=[Line(sku=sku, quantity=1)]))
    await driver.status(order_id, "partially_shipped")
    await driver.channel.send(LocationUpdate(**ids, status="rejected", reason="SHORT_PICK"))

    [cancelled] = await driver.orders.wait_for(of_type(OrderLinesCancelled, order_id))
    assert cancelled["data"]["lines"] == [{"sku": sku, "quantity": 1}]
    assert cancelled["data"]["totals"]["total"] == cancelled["data"]["amount_due"]  # the order without it
    assert await driver.count("SELECT (placed->'lines'->0->>'quantity')::int FROM capture.orders "
                              "WHERE order_id = $1", order_id) == 1
    await driver.status(order_id, "shipped")
    await reservation(driver, order_id, "committed")
    assert await stock_at(driver, sku, location) == (1, 0)  # the unit it could not find is still on the books
    assert not driver.orders.envelopes(of_type(OrderCancelled, order_id))
    await told(driver, order_id, "order_lines_cancelled")
    [rejected] = await driver.erp.wait_for(of_type(FulfillmentRejected, order_id))
    assert rejected["data"]["shipped"] == [{"sku": sku, "quantity": 1}]
    # The location worked on it: once routing has taken the rejection in, its day's capacity stays used.
    await eventually(lambda: driver.count("SELECT count(*) FROM routing.inbox WHERE message_key = $1",
                                          rejected["id"]), what="routing to take the rejection in")
    assert await driver.count("SELECT count(*) FROM routing.capacity_claims WHERE fulfillment_order_id = $1 "
                              "AND released_at IS NULL", ids["fulfillment_order_id"]) == 1


async def _is(value, expected) -> bool:
    return await value == expected


@pytest.fixture
async def short_hold(config, tmp_path):
    """An OMS of its own whose stores hold a ready pickup order for two seconds."""
    async with stack(config, tmp_path, env={"OMS_PICKUP_HOLD_SECONDS": "2"}) as oms, \
            client(oms.settings, "test/channel") as channel, \
            TopicWatcher(oms.settings, ORDER_EVENTS) as orders, \
            TopicWatcher(oms.settings, FULFILLMENT_EVENTS) as erp, \
            TopicWatcher(oms.settings, FULFILLMENT_WORK, every_party=True) as work:
        db = await asyncpg.create_pool(oms.settings.admin_dsn(), min_size=1, max_size=2)
        try:
            yield Driver(oms.settings, db, channel, orders, erp, work, dead_letters=None)
        finally:
            await db.close()


async def test_a_pickup_order_not_collected_in_time_is_cancelled_and_its_stock_back_on_the_shelf(short_hold):
    driver = short_hold
    store, sku, order_id, ids = await pickup_order(driver, units_in_store=1)
    await driver.channel.send(LocationUpdate(**ids, status="ready_for_pickup"))

    await driver.erp.wait_for(of_type(PickupExpired, order_id))
    [withdrawn] = await driver.work.wait_for(of_type(FulfillmentWithdrawn, order_id))  # the store puts it back
    assert withdrawn["data"]["location_id"] == store
    [cancelled] = await driver.orders.wait_for(of_type(OrderCancelled, order_id))
    assert cancelled["data"]["reason"]["code"] == "NOT_COLLECTED"
    await driver.status(order_id, "cancelled")
    await reservation(driver, order_id, "released")
    stock = await driver.db.fetchrow("SELECT on_hand, allocated FROM inventory.location_stock "
                                     "WHERE sku = $1 AND location_id = $2", sku, store)
    assert (stock["on_hand"], stock["allocated"]) == (1, 0)
    await told(driver, order_id, "order_cancelled")


async def reservation(driver: Driver, order_id, expected: str | None = None) -> str:
    """The order's reservation status; with `expected`, once it is that (inventory acts after the saga)."""
    async def status():
        found = await driver.count("SELECT status FROM inventory.reservations WHERE order_id = $1", order_id)
        return found if expected is None or found == expected else None

    return await eventually(status, what=f"reservation of {order_id} {expected or ''}")


async def told(driver: Driver, order_id, kind: str) -> None:
    await eventually(lambda: driver.count("SELECT 1 FROM notification.notifications WHERE order_id = $1 AND kind = $2",
                                          order_id, kind), what=f"the customer told {kind}")
