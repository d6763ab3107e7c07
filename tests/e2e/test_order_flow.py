"""One order at a time through all five services: the happy path and each way it can end early."""

import pytest

from shared.contracts.fulfillment import FulfillmentRequested, LocationUpdate, ShipmentConfirmed
from shared.contracts.notification import CustomerNotified
from shared.contracts.orders import OrderAccepted, OrderCancelled, OrderConfirmed, OrderProgressed, OrderShipped

from ..support.topics import TopicWatcher, of_type
from ops.waiting import eventually
from .conftest import BERLIN, FRANKFURT

pytestmark = pytest.mark.e2e


async def test_happy_path_from_channel_to_erp_and_customer(driver):
    near, far, sku = driver.unique("WH-NEAR"), driver.unique("WH-FAR"), driver.unique("SKU")
    await driver.location(near, FRANKFURT)
    await driver.location(far, BERLIN)
    await driver.stock(sku, near, 5)
    await driver.stock(sku, far, 5)
    order = driver.order([(sku, 2)], city="Frankfurt")
    order_id = driver.order_id(order)

    await driver.channel.send(order)
    await driver.orders.wait_for(of_type(OrderAccepted, order_id))
    [confirmed] = await driver.orders.wait_for(of_type(OrderConfirmed, order_id))
    assert confirmed["data"]["location_id"] == near, "routed to the nearest location with stock"
    [work] = await driver.work.wait_for(of_type(FulfillmentRequested, order_id))
    assert work["data"]["location_id"] == near and work["data"]["lines"] == [{"sku": sku, "quantity": 2}]
    assert await driver.status(order_id, "confirmed") == "confirmed"

    ids = {"fulfillment_order_id": work["data"]["fulfillment_order_id"], "order_id": str(order_id)}
    await driver.channel.send(LocationUpdate(**ids, status="picked"))
    await driver.channel.send(LocationUpdate(**ids, status="shipped", carrier="DHL", tracking_number="TRK1"))

    [picked] = await driver.orders.wait_for(of_type(OrderProgressed, order_id))
    assert (picked["data"]["status"], picked["data"]["location_id"]) == ("picked", near)
    [shipment] = await driver.erp.wait_for(of_type(ShipmentConfirmed, order_id))
    assert (shipment["data"]["carrier"], shipment["data"]["tracking_number"]) == ("DHL", "TRK1")
    assert shipment["correlationid"] == confirmed["correlationid"], "one correlation id through the whole flow"
    await driver.orders.wait_for(of_type(OrderShipped, order_id))
    assert await driver.status(order_id, "shipped") == "shipped"

    async def shipped_message():
        return await driver.db.fetchrow(
            "SELECT subject, body FROM notification.notifications WHERE order_id = $1 AND kind = 'order_shipped'",
            order_id)

    message = await eventually(shipped_message, what="the shipped customer message")
    assert "TRK1" in message["body"]

    async def stock_after_commit():
        row = await driver.db.fetchrow("SELECT on_hand, allocated FROM inventory.location_stock "
                                       "WHERE sku = $1 AND location_id = $2", sku, near)
        return row if row["on_hand"] == 3 else None

    assert dict(await eventually(stock_after_commit, what="the shipped units to leave stock")) == \
        {"on_hand": 3, "allocated": 0}
    assert await driver.count("SELECT reserved FROM inventory.sku_stock WHERE sku = $1", sku) == 0


async def test_not_enough_stock_cancels_with_a_reason_and_holds_nothing(driver):
    sku = await driver.stocked_sku(1)
    order = driver.order([(sku, 3)])
    order_id = driver.order_id(order)

    await driver.channel.send(order)
    [cancelled] = await driver.orders.wait_for(of_type(OrderCancelled, order_id))
    assert cancelled["data"]["reason"]["code"] == "OUT_OF_STOCK"
    assert await driver.status(order_id, "cancelled") == "cancelled"
    async def settled_in_inventory():
        return await driver.db.fetchval("SELECT status FROM inventory.reservations WHERE order_id = $1", order_id)

    assert await eventually(settled_in_inventory, what="the release to reach inventory") == "released"
    assert await driver.count("SELECT reserved FROM inventory.sku_stock WHERE sku = $1", sku) == 0


async def test_unknown_sku_cancels_with_its_own_reason(driver):
    order = driver.order([(driver.unique("NOSUCH"), 1)])
    order_id = driver.order_id(order)
    await driver.channel.send(order)
    [cancelled] = await driver.orders.wait_for(of_type(OrderCancelled, order_id))
    assert cancelled["data"]["reason"]["code"] == "UNKNOWN_SKU"


async def test_no_route_releases_the_reservation_and_cancels(driver):
    store, sku = driver.unique("ST"), driver.unique("SKU")
    await driver.location(store, FRANKFURT, kind="store", ships_to_customers=False, accepts_pickup=True)
    await driver.stock(sku, store, 4)  # in the network, but nowhere that ships to customers
    order = driver.order([(sku, 2)])
    order_id = driver.order_id(order)

    await driver.channel.send(order)
    [cancelled] = await driver.orders.wait_for(of_type(OrderCancelled, order_id))
    assert cancelled["data"]["reason"]["code"] == "NO_LOCATION_WITH_STOCK"
    assert cancelled["data"]["stage"] == "reserving"  # the first sourcing: inventory asked routing

    async def released():
        return await driver.db.fetchval("SELECT status FROM inventory.reservations WHERE order_id = $1",
                                        order_id) == "released"

    await eventually(released, what="the reservation to be released")
    assert await driver.count("SELECT reserved FROM inventory.sku_stock WHERE sku = $1", sku) == 0
    await driver.status(order_id, "cancelled")


async def test_pickup_in_store_goes_to_that_store(driver):
    store, warehouse, sku = driver.unique("ST"), driver.unique("WH"), driver.unique("SKU")
    await driver.location(store, BERLIN, kind="store", accepts_pickup=True)
    await driver.location(warehouse, FRANKFURT)
    await driver.stock(sku, store, 2)
    await driver.stock(sku, warehouse, 2)
    order = driver.order([(sku, 1)], city="Frankfurt", pickup_store=store)
    order_id = driver.order_id(order)

    await driver.channel.send(order)
    [confirmed] = await driver.orders.wait_for(of_type(OrderConfirmed, order_id))
    assert confirmed["data"]["location_id"] == store


async def test_customer_hears_once_per_event(driver):
    sku = await driver.stocked_sku(1)
    order = driver.order([(sku, 1)])
    order_id = driver.order_id(order)
    await driver.channel.send(order)
    await driver.status(order_id, "confirmed")

    async with TopicWatcher(driver.config, CustomerNotified.topic) as notified:
        await notified.wait_for(of_type(CustomerNotified, order_id))
        kinds = [e["data"]["kind"] for e in notified.envelopes(of_type(CustomerNotified, order_id))]
    assert kinds == ["order_confirmed"]
