"""Split shipments, five processes: an order no single location can serve goes out from two, each part reserved
at its own location and shipped by it; a line no location has in full is shared out (the network's summed stock
is what the customer was shown); a short pick's rest is re-sourced elsewhere and shipped from there."""

import pytest

from ops.waiting import eventually
from shared.contracts.common import Line
from shared.contracts.fulfillment import FulfillmentRequested, LocationUpdate, ShipmentConfirmed
from shared.contracts.orders import OrderCancelled, OrderConfirmed, OrderLinesCancelled, OrderShipped

from ..support.topics import of_type
from .conftest import BERLIN, FRANKFURT, Driver

pytestmark = pytest.mark.e2e


async def two_warehouses(driver: Driver) -> tuple[str, str]:
    near, far = driver.unique("WH-NEAR"), driver.unique("WH-FAR")
    await driver.location(near, FRANKFURT)
    await driver.location(far, BERLIN)
    return near, far


async def ship_all(driver: Driver, order_id, works: list[dict]) -> None:
    for n, work in enumerate(works):
        ids = {"fulfillment_order_id": work["data"]["fulfillment_order_id"], "order_id": order_id}
        await driver.channel.send(LocationUpdate(**ids, status="shipped", carrier="DHL", tracking_number=f"S{n}"))


async def stock_at(driver: Driver, sku: str, location: str) -> tuple[int, int]:
    row = await driver.db.fetchrow("SELECT on_hand, allocated FROM inventory.location_stock "
                                   "WHERE sku = $1 AND location_id = $2", sku, location)
    return row["on_hand"], row["allocated"]


async def reservation_committed(driver: Driver, order_id) -> None:
    await eventually(lambda: driver.count("SELECT count(*) FROM inventory.reservations WHERE order_id = $1 "
                                          "AND status = 'committed'", order_id), what="the reservation committed")


async def test_an_order_split_across_two_warehouses_ships_from_both(driver):
    near, far = await two_warehouses(driver)
    only_near, only_far = driver.unique("SKU-A"), driver.unique("SKU-B")
    await driver.stock(only_near, near, 5)
    await driver.stock(only_far, far, 5)
    order = driver.order([(only_near, 2), (only_far, 1)])  # 59.97: worth a split (rules.toml: from 50)
    order_id = driver.order_id(order)
    await driver.channel.send(order)

    works = await driver.work.wait_for(of_type(FulfillmentRequested, order_id), count=2)
    assert sorted((w["data"]["location_id"], w["data"]["lines"][0]["sku"]) for w in works) == sorted(
        [(near, only_near), (far, only_far)])
    confirmed = await driver.orders.wait_for(of_type(OrderConfirmed, order_id), count=2)
    assert {c["data"]["location_id"] for c in confirmed} == {near, far}
    await driver.status(order_id, "confirmed")
    assert await stock_at(driver, only_near, near) == (5, 2) and await stock_at(driver, only_far, far) == (5, 1)

    await ship_all(driver, order_id, works[:1])
    await driver.status(order_id, "partially_shipped")
    await ship_all(driver, order_id, works[1:])
    await driver.status(order_id, "shipped")
    shipped = await driver.orders.wait_for(of_type(OrderShipped, order_id), count=2)
    assert [s["data"]["complete"] for s in shipped] == [False, True]
    assert len(await driver.erp.wait_for(of_type(ShipmentConfirmed, order_id), count=2)) == 2
    await reservation_committed(driver, order_id)
    assert await stock_at(driver, only_near, near) == (3, 0) and await stock_at(driver, only_far, far) == (4, 0)


async def test_stock_summed_across_locations_is_reserved_where_it_is_not_all_at_the_first(driver):
    near, far = await two_warehouses(driver)
    sku = driver.unique("SKU")
    await driver.stock(sku, near, 2)
    await driver.stock(sku, far, 2)
    order = driver.order([(sku, 3)])  # the channel saw 4 in stock; no warehouse has 3
    order_id = driver.order_id(order)
    await driver.channel.send(order)

    works = await driver.work.wait_for(of_type(FulfillmentRequested, order_id), count=2)
    assert sorted((w["data"]["location_id"], w["data"]["lines"]) for w in works) == sorted(
        [(near, [{"sku": sku, "quantity": 2}]), (far, [{"sku": sku, "quantity": 1}])])
    assert await stock_at(driver, sku, near) == (2, 2) and await stock_at(driver, sku, far) == (2, 1)
    await ship_all(driver, order_id, works)
    await driver.status(order_id, "shipped")
    await reservation_committed(driver, order_id)
    assert await stock_at(driver, sku, near) == (0, 0) and await stock_at(driver, sku, far) == (1, 0)
    assert not driver.orders.envelopes(of_type(OrderCancelled, order_id))


async def test_a_short_picks_rest_is_re_sourced_elsewhere_and_shipped_from_there(driver):
    near, far = await two_warehouses(driver)
    sku = driver.unique("SKU")
    await driver.stock(sku, near, 5)
    await driver.stock(sku, far, 5)
    order = driver.order([(sku, 3)])
    order_id = driver.order_id(order)
    await driver.channel.send(order)
    [first] = await driver.work.wait_for(of_type(FulfillmentRequested, order_id))
    assert first["data"]["location_id"] == near
    ids = {"fulfillment_order_id": first["data"]["fulfillment_order_id"], "order_id": order_id}
    await driver.channel.send(LocationUpdate(**ids, status="shipped", carrier="DHL", tracking_number="P1",
                                             lines=[Line(sku=sku, quantity=1)]))
    await driver.status(order_id, "partially_shipped")
    await driver.channel.send(LocationUpdate(**ids, status="rejected", reason="SHORT_PICK"))

    [_, rest] = await driver.work.wait_for(of_type(FulfillmentRequested, order_id), count=2)
    assert (rest["data"]["location_id"], rest["data"]["lines"]) == (far, [{"sku": sku, "quantity": 2}])
    await ship_all(driver, order_id, [rest])
    await driver.status(order_id, "shipped")
    await reservation_committed(driver, order_id)
    assert await stock_at(driver, sku, near) == (4, 0)  # the two it could not find are still on its books
    assert await stock_at(driver, sku, far) == (3, 0)
    assert not driver.orders.envelopes(of_type(OrderLinesCancelled, order_id))
    [*_, last] = await driver.orders.wait_for(of_type(OrderShipped, order_id), count=2)
    assert last["data"]["complete"]
