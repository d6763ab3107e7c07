"""Safety stock and reservation expiry through the services as processes."""

import asyncpg
import pytest

from ops.client import client
from ops.demo import sample_order
from ops.waiting import eventually
from services.capture.validation import order_id_for
from shared.contracts.inventory import ReceiveStock, ReservationExpired, SetSafetyStock, StockReceived
from shared.contracts.orders import OrderCancelled, OrderConfirmed
from shared.contracts.routing import RouteOrder
from shared.contracts.topics import INVENTORY_EVENTS, ORDER_EVENTS, ROUTING_COMMANDS

from ..support.stack import stack
from ..support.topics import TopicWatcher, of_type
from .conftest import BERLIN, FRANKFURT

pytestmark = pytest.mark.e2e


async def test_safety_stock_is_never_promised_nor_routed_to(driver):
    sku, near, far = driver.unique("SAFE"), driver.unique("WH"), driver.unique("WH")
    await driver.location(near, FRANKFURT)
    await driver.location(far, BERLIN)
    await driver.stock(sku, near, 5)
    await driver.stock(sku, far, 5)
    await driver.channel.send(SetSafetyStock(location_id=near, sku=sku, quantity=4))
    await eventually(lambda: driver.db.fetchval("SELECT 1 FROM inventory.sku_safety_stock WHERE sku = $1", sku),
                     what="the safety stock to be set")

    near_is_short = driver.order([(sku, 2)], city="Frankfurt")
    await driver.channel.send(near_is_short)
    [confirmed] = await driver.orders.wait_for(of_type(OrderConfirmed, driver.order_id(near_is_short)))
    assert confirmed["data"]["location_id"] == far, "Frankfurt may promise only 1 of its 5 units"

    beyond_atp = driver.order([(sku, 5)], city="Frankfurt")  # 10 on hand, 2 reserved, 4 kept back: 4 to promise
    await driver.channel.send(beyond_atp)
    [cancelled] = await driver.orders.wait_for(of_type(OrderCancelled, driver.order_id(beyond_atp)))
    assert cancelled["data"]["reason"]["code"] == "OUT_OF_STOCK"
    assert await driver.count("SELECT reserved FROM inventory.sku_stock WHERE sku = $1", sku) == 2


async def test_a_reservation_that_expires_before_confirmation_cancels_the_order(config, tmp_path):
    """Routing is not running: the order waits, held, in `reserving` (its step deadline far off; inventory has
    asked routing) until the reservation's TTL passes; inventory releases it and the saga cancels with
    RESERVATION_EXPIRED."""
    async with stack(config, tmp_path, services=("capture", "inventory"), step_timeout=120.0,
                     env={"OMS_RESERVATION_TTL_SECONDS": "2"}) as oms, \
            TopicWatcher(oms.settings, INVENTORY_EVENTS) as inventory, \
            TopicWatcher(oms.settings, ROUTING_COMMANDS) as routing, \
            TopicWatcher(oms.settings, ORDER_EVENTS) as orders:
        order = sample_order(f"EXPIRE-{tmp_path.name[-6:]}", lines=[("EXPIRING-SKU", 2)])
        order_id = order_id_for(order.channel, order.channel_order_id)
        async with client(oms.settings, "test/channel") as channel:
            await channel.send(ReceiveStock(receipt_id="R-EXPIRE", sku="EXPIRING-SKU", location_id="WH-1",
                                            quantity=5))
            await inventory.wait_for(of_type(StockReceived, "EXPIRING-SKU"))
            await channel.send(order)
        await routing.wait_for(of_type(RouteOrder, order_id))
        await inventory.wait_for(of_type(ReservationExpired, order_id), timeout=30)
        [cancelled] = await orders.wait_for(of_type(OrderCancelled, order_id), timeout=30)
        assert cancelled["data"]["reason"]["code"] == "RESERVATION_EXPIRED"
        assert cancelled["data"]["stage"] == "reserving"
        db = await asyncpg.connect(oms.settings.admin_dsn())
        try:
            assert await db.fetchval("SELECT reserved FROM inventory.sku_stock WHERE sku = 'EXPIRING-SKU'") == 0
            assert await db.fetchval("SELECT status FROM capture.orders WHERE order_id = $1", order_id) == "cancelled"
        finally:
            await db.close()

