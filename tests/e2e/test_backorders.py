"""Backorders and preorders, five processes: orders the channel lets wait are served as stock arrives, orders
waiting longer first, and learn when announced receipts will cover them."""

from datetime import date

from ops.waiting import eventually
from shared.contracts.inventory import ExpectReceipt, ReceiveStock
from shared.contracts.orders import OrderBackordered, OrderCancelled, OrderConfirmed

from ..support.topics import of_type
from .conftest import FRANKFURT


async def test_waiting_orders_are_filled_by_receipts_in_arrival_order(driver):
    location, sku = driver.unique("WH"), driver.unique("PRE")
    await driver.location(location, FRANKFURT)
    announced = ExpectReceipt(receipt_id=driver.unique("PO"), sku=sku, location_id=location, quantity=3,
                              expected_on=date(2027, 3, 1))
    await driver.channel.send(announced)
    # Inventory must know the SKU before the orders reach it: the announcement and a reservation travel on
    # different partitions, and one batch holding both may apply the reservation first (UNKNOWN_SKU).
    await eventually(lambda: driver.db.fetchval("SELECT 1 FROM inventory.expected_receipts WHERE receipt_id = $1",
                                                announced.receipt_id), what="the receipt announced")
    first, second = (driver.order([(sku, 2)]).model_copy(update={"allow_backorder": True}) for _ in range(2))
    impatient = driver.order([(sku, 1)])  # may not wait
    for order in (first, second):
        await driver.channel.send(order)
        await driver.orders.wait_for(of_type(OrderBackordered, driver.order_id(order)))  # in this order
    [told_first] = driver.orders.envelopes(of_type(OrderBackordered, driver.order_id(first)))
    [told_second] = driver.orders.envelopes(of_type(OrderBackordered, driver.order_id(second)))
    assert told_first["data"]["expected_on"] == "2027-03-01" and told_second["data"]["expected_on"] is None
    await driver.status(driver.order_id(first), "backordered")

    await driver.channel.send(ReceiveStock(receipt_id=driver.unique("R"), sku=sku, location_id=location, quantity=3))
    await driver.orders.wait_for(of_type(OrderConfirmed, driver.order_id(first)))
    await driver.channel.send(impatient)  # one unit is free, but the second waiting order is owed it
    [cancelled] = await driver.orders.wait_for(of_type(OrderCancelled, driver.order_id(impatient)))
    assert cancelled["data"]["reason"]["code"] == "OUT_OF_STOCK"
    assert await driver.status(driver.order_id(second), "backordered") == "backordered"

    await driver.channel.send(ReceiveStock(receipt_id=driver.unique("R"), sku=sku, location_id=location, quantity=1))
    await driver.orders.wait_for(of_type(OrderConfirmed, driver.order_id(second)))
    await driver.status(driver.order_id(second), "confirmed")
    await driver.status(driver.order_id(first), "confirmed")
