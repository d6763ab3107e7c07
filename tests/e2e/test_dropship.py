"""Dropship through all five services: a vendor's SKU is routed to the vendor, which gets a purchase order on its
own topic (not a work item), acknowledges and ships it, or rejects it and the order goes elsewhere."""

import uuid

import asyncpg
import pytest

from shared.contracts.common import Coordinates, Line
from ops.client import client
from shared.contracts.fulfillment import (
    FulfillmentOrderAmended,
    FulfillmentOrderProgressed,
    FulfillmentRejected,
    FulfillmentRequested,
    FulfillmentWithdrawn,
    LocationUpdate,
    PurchaseOrderAmended,
    PurchaseOrderCancelled,
    PurchaseOrderIssued,
    ShipmentConfirmed,
    purchase_order_number,
)
from shared.contracts.orders import (
    CancelOrder,
    CancelOrderLines,
    OrderCancelled,
    OrderConfirmed,
    OrderEdited,
    OrderShipped,
)
from shared.contracts.topics import FULFILLMENT_DROPSHIP_ORDERS, FULFILLMENT_EVENTS, FULFILLMENT_WORK, ORDER_EVENTS

from ..support.stack import stack
from ..support.topics import TopicWatcher, of_type
from ops.waiting import eventually
from .conftest import BERLIN, Driver

pytestmark = pytest.mark.e2e

LEIPZIG = Coordinates(lat=51.34, lon=12.37)
VENDOR = "DS-ACME"  # carries SOCKS- SKUs in the live rule set (services/routing/rules.toml)


@pytest.fixture
async def purchase_orders(driver):
    async with TopicWatcher(driver.config, FULFILLMENT_DROPSHIP_ORDERS, every_party=True) as watcher:
        yield watcher


async def vendor_sku(driver, units: int) -> str:
    """A new SOCKS- SKU the vendor in Leipzig holds; the vendor known to fulfillment as one."""
    sku = driver.unique("SOCKS")
    await driver.location(VENDOR, LEIPZIG, kind="dropship")
    await eventually(lambda: driver.db.fetchval("SELECT kind = 'dropship' FROM fulfillment.location_kinds "
                                                "WHERE location_id = $1", VENDOR),
                     what="fulfillment to know the vendor")
    await driver.stock(sku, VENDOR, units)
    return sku


def about(contract, order_id):
    """Purchase orders are keyed by vendor: find an order's by its data."""
    return lambda e: e.get("type") == contract.message_type and e["data"]["order_id"] == str(order_id)


async def purchase_order_for(driver, purchase_orders, order) -> dict:
    order_id = driver.order_id(order)
    await driver.channel.send(order)
    [issued] = await purchase_orders.wait_for(about(PurchaseOrderIssued, order_id))
    return issued["data"]


async def test_a_vendor_acknowledges_and_ships_its_purchase_order(driver, purchase_orders):
    sku = await vendor_sku(driver, 5)
    order = driver.order([(sku, 2)], city="Leipzig")
    order_id = driver.order_id(order)
    po = await purchase_order_for(driver, purchase_orders, order)

    assert po["location_id"] == VENDOR
    assert po["purchase_order_number"] == purchase_order_number(uuid.UUID(po["fulfillment_order_id"]))
    assert po["lines"] == [{"sku": sku, "quantity": 2}]
    assert po["ship_to"]["name"] == "A. Customer" and po["ship_to"]["city"] == "Leipzig"
    await driver.status(order_id, "confirmed")
    status = await driver.db.fetchval("SELECT status FROM fulfillment.fulfillment_orders WHERE order_id = $1",
                                      order_id)
    assert status == "requested", "not acknowledged yet: visible as requested"

    ids = {"fulfillment_order_id": po["fulfillment_order_id"], "order_id": str(order_id)}
    await driver.channel.send(LocationUpdate(**ids, status="accepted"))
    [acknowledged] = await driver.erp.wait_for(of_type(FulfillmentOrderProgressed, order_id))
    assert acknowledged["data"]["status"] == "accepted"
    await driver.channel.send(LocationUpdate(**ids, status="shipped", carrier="UPS", tracking_number="1Z-DROP"))
    [shipment] = await driver.erp.wait_for(of_type(ShipmentConfirmed, order_id))
    assert shipment["data"]["location_id"] == VENDOR and shipment["data"]["tracking_number"] == "1Z-DROP"
    assert shipment["data"]["lines"] == [{"sku": sku, "quantity": 2}] and shipment["data"]["complete"]
    await driver.orders.wait_for(of_type(OrderShipped, order_id))
    assert await driver.status(order_id, "shipped") == "shipped"
    assert driver.work.envelopes(of_type(FulfillmentRequested, order_id)) == [], "a vendor gets no work item"


async def test_a_vendor_gets_a_purchase_order_before_fulfillment_has_heard_what_it_is(driver, purchase_orders):
    """Fulfillment learns a location's kind from routing's LocationRegistered, on a topic of its own, read in
    batches; an order routed to a vendor registered just before may be requested first. The request carries
    the kind routing planned with, so the vendor still gets a purchase order, not a warehouse's work item."""
    sku = await vendor_sku(driver, 5)
    forgotten = await driver.db.execute("DELETE FROM fulfillment.location_kinds WHERE location_id = $1", VENDOR)
    assert forgotten == "DELETE 1"
    try:
        order = driver.order([(sku, 1)], city="Leipzig")
        po = await purchase_order_for(driver, purchase_orders, order)
        assert po["location_id"] == VENDOR
        assert driver.work.envelopes(of_type(FulfillmentRequested, driver.order_id(order))) == []
    finally:
        await driver.db.execute("INSERT INTO fulfillment.location_kinds (location_id, kind) VALUES ($1, 'dropship') "
                                "ON CONFLICT (location_id) DO UPDATE SET kind = 'dropship'", VENDOR)


async def test_a_vendor_acknowledged_purchase_order_shrinks_when_the_customer_cancels_a_unit(driver, purchase_orders):
    sku = await vendor_sku(driver, 5)
    order = driver.order([(sku, 3)], city="Leipzig")
    order_id = driver.order_id(order)
    po = await purchase_order_for(driver, purchase_orders, order)
    await driver.status(order_id, "confirmed")
    ids = {"fulfillment_order_id": po["fulfillment_order_id"], "order_id": str(order_id)}
    await driver.channel.send(LocationUpdate(**ids, status="accepted"))
    await driver.erp.wait_for(of_type(FulfillmentOrderProgressed, order_id))

    await driver.channel.send(CancelOrderLines(channel=order.channel, channel_order_id=order.channel_order_id,
                                               edit_id="ONE-LESS", lines=[Line(sku=sku, quantity=1)]))
    [amended] = await purchase_orders.wait_for(about(PurchaseOrderAmended, order_id))
    assert (amended["data"]["purchase_order_number"], amended["data"]["lines"]) == (
        po["purchase_order_number"], [{"sku": sku, "quantity": 2}])
    await driver.orders.wait_for(of_type(OrderEdited, order_id))
    assert driver.work.envelopes(of_type(FulfillmentOrderAmended, order_id)) == [], "a vendor's is on its PO topic"


async def test_a_vendor_rejecting_its_purchase_order_is_replaced_by_a_warehouse(driver, purchase_orders):
    sku = await vendor_sku(driver, 3)
    warehouse = driver.unique("WH")
    await driver.location(warehouse, BERLIN)
    await driver.stock(sku, warehouse, 3)
    order = driver.order([(sku, 1)], city="Leipzig")
    order_id = driver.order_id(order)
    po = await purchase_order_for(driver, purchase_orders, order)

    await driver.channel.send(LocationUpdate(fulfillment_order_id=po["fulfillment_order_id"], order_id=order_id,
                                             status="rejected", reason="DISCONTINUED"))
    [work] = await driver.work.wait_for(of_type(FulfillmentRequested, order_id))
    assert work["data"]["location_id"] == warehouse
    confirmations = await driver.orders.wait_for(of_type(OrderConfirmed, order_id), count=2)
    assert [c["data"]["location_id"] for c in confirmations] == [VENDOR, warehouse]
    assert len(purchase_orders.envelopes(about(PurchaseOrderIssued, order_id))) == 1


async def test_a_vendor_rejecting_with_nowhere_else_to_go_cancels_the_order(driver, purchase_orders):
    sku = await vendor_sku(driver, 3)
    order = driver.order([(sku, 1)], city="Leipzig")
    order_id = driver.order_id(order)
    po = await purchase_order_for(driver, purchase_orders, order)

    await driver.channel.send(LocationUpdate(fulfillment_order_id=po["fulfillment_order_id"], order_id=order_id,
                                             status="rejected", reason="DISCONTINUED"))
    await driver.orders.wait_for(of_type(OrderCancelled, order_id))
    assert await driver.status(order_id, "cancelled") == "cancelled"


async def test_an_order_cancelled_before_the_vendor_ships_cancels_its_purchase_order(driver, purchase_orders):
    sku = await vendor_sku(driver, 3)
    order = driver.order([(sku, 1)], city="Leipzig")
    order_id = driver.order_id(order)
    po = await purchase_order_for(driver, purchase_orders, order)
    await driver.status(order_id, "confirmed")

    await driver.channel.send(CancelOrder(channel=order.channel, channel_order_id=order.channel_order_id))
    [cancelled] = await purchase_orders.wait_for(about(PurchaseOrderCancelled, order_id))
    assert cancelled["data"]["purchase_order_number"] == po["purchase_order_number"]
    assert cancelled["data"]["location_id"] == VENDOR
    await driver.status(order_id, "cancelled")
    assert driver.work.envelopes(of_type(FulfillmentWithdrawn, order_id)) == []


@pytest.fixture
async def short_ack(config, tmp_path):
    """An OMS of its own whose vendors have two seconds to acknowledge a purchase order."""
    async with stack(config, tmp_path, env={"OMS_DROPSHIP_ACK_SECONDS": "2"}) as oms, \
            client(oms.settings, "test/channel") as channel, \
            TopicWatcher(oms.settings, ORDER_EVENTS) as orders, \
            TopicWatcher(oms.settings, FULFILLMENT_EVENTS) as erp, \
            TopicWatcher(oms.settings, FULFILLMENT_WORK, every_party=True) as work, \
            TopicWatcher(oms.settings, FULFILLMENT_DROPSHIP_ORDERS, every_party=True) as purchase_orders:
        db = await asyncpg.create_pool(oms.settings.admin_dsn(), min_size=1, max_size=2)
        try:
            yield Driver(oms.settings, db, channel, orders, erp, work, dead_letters=None), purchase_orders
        finally:
            await db.close()


async def test_a_purchase_order_not_acknowledged_in_time_goes_elsewhere(short_ack):
    driver, purchase_orders = short_ack
    sku = await vendor_sku(driver, 3)
    warehouse = driver.unique("WH")
    await driver.location(warehouse, BERLIN)
    await driver.stock(sku, warehouse, 3)
    order = driver.order([(sku, 1)], city="Leipzig")
    order_id = driver.order_id(order)
    po = await purchase_order_for(driver, purchase_orders, order)

    [withdrawn] = await purchase_orders.wait_for(about(PurchaseOrderCancelled, order_id))
    assert withdrawn["data"]["purchase_order_number"] == po["purchase_order_number"]
    [rejected] = await driver.erp.wait_for(of_type(FulfillmentRejected, order_id))
    assert rejected["data"]["reason"]["code"] == "NOT_ACKNOWLEDGED" and rejected["data"]["location_id"] == VENDOR
    [work] = await driver.work.wait_for(of_type(FulfillmentRequested, order_id))
    assert work["data"]["location_id"] == warehouse
    status = await driver.db.fetchval("SELECT status FROM fulfillment.fulfillment_orders "
                                      "WHERE fulfillment_order_id = $1", uuid.UUID(po["fulfillment_order_id"]))
    assert status == "rejected"
