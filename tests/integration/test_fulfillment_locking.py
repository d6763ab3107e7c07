"""Fulfillment's batches lock their orders in one order before any handler runs: a batch of cancellations locked
each fulfilment order's row as it came to it, so it could hold one while waiting for another that a batch of
location updates (its orders locked first, then their rows in turn) held while waiting for the first."""

import asyncio
import uuid

import pytest

from ops.demo import address
from ops.waiting import eventually
from services.fulfillment.app import SERVICE as FULFILLMENT
from services.fulfillment.handlers import ORDER_LOCKS
from shared.contracts.common import Line, ShipTo
from shared.contracts.fulfillment import CancelFulfillment, RequestFulfillment, fulfillment_order_id
from shared.contracts.topics import DEAD_LETTERS, FULFILLMENT_COMMANDS
from shared.messaging.consumer import Consumer

from .conftest import service_pool
from .test_capture_locking import FailuresKept, command, waiting_for_a_lock

pytestmark = pytest.mark.integration

LOCATION = "WH-LOCKING"


@pytest.fixture
async def fulfillment_pool(config):
    pool = await service_pool(config, "fulfillment")
    yield pool
    await pool.close()


@pytest.fixture
async def requested(config, fulfillment_pool):
    """Two orders' fulfilment requested at one location, removed afterwards with what they staged."""
    orders = [uuid.uuid4(), uuid.uuid4()]
    consumer = Consumer(fulfillment_pool, service="fulfillment", group=f"locking-test-{uuid.uuid4().hex[:6]}",
                        writes=frozenset(FULFILLMENT.publishes) | {DEAD_LETTERS}, settings=config)
    delivery = ShipTo(type="ship", address=address())
    requests = [command(offset, RequestFulfillment(order_id=order_id, location_id=LOCATION, delivery=delivery,
                                                    lines=[Line(sku="SKU-1", quantity=1)],
                                                    location_kind="warehouse"))
                for offset, order_id in enumerate(orders)]
    await consumer.process(_commands(), requests)
    yield orders
    async with fulfillment_pool.acquire() as conn:
        await conn.execute("DELETE FROM fulfillment_orders WHERE order_id = ANY($1)", orders)
        await conn.execute("DELETE FROM outbox WHERE key = ANY($1)", [str(o) for o in orders])


def _commands():
    return next(sub for sub in FULFILLMENT.subscriptions if sub.topic == FULFILLMENT_COMMANDS)


async def test_a_batch_of_cancellations_never_holds_one_order_while_waiting_for_another(config, fulfillment_pool,
                                                                                       admin, requested):
    """Location updates for both orders hold them, and the first one's row, and want the second's; the
    cancellations (the second order's first) wait for the orders without holding the second's row."""
    first, second = requested
    group = f"locking-test-{uuid.uuid4().hex[:6]}"
    monitor = FailuresKept("fulfillment", group)
    consumer = Consumer(fulfillment_pool, service="fulfillment", group=group, monitor=monitor,
                        writes=frozenset(FULFILLMENT.publishes) | {DEAD_LETTERS}, settings=config)
    keys = sorted({int.from_bytes(order_id.bytes[:4], "big", signed=True) for order_id in requested})
    row = "SELECT FROM fulfillment_orders WHERE fulfillment_order_id = $1 FOR UPDATE"
    async with fulfillment_pool.acquire() as updates:
        async with updates.transaction():
            await updates.execute("SELECT count(pg_advisory_xact_lock($1, key)) FROM unnest($2::int4[]) AS key",
                                  ORDER_LOCKS, keys)
            await updates.execute(row, fulfillment_order_id(first, LOCATION))
            cancellations = [command(offset, CancelFulfillment(order_id=order_id, location_id=LOCATION))
                             for offset, order_id in enumerate([second, first])]
            applying = asyncio.create_task(consumer.process(_commands(), cancellations))
            await eventually(lambda: waiting_for_a_lock(admin, updates, "fulfillment_orders"),
                             what="the cancellations waiting")
            await updates.execute(row, fulfillment_order_id(second, LOCATION))  # deadlocked if they held it
        await asyncio.wait_for(applying, 30)
    assert monitor.failures == [], "the batch failed (a deadlock) and was applied again"
    statuses = await admin.fetch("SELECT status FROM fulfillment.fulfillment_orders WHERE order_id = ANY($1)",
                                 requested)
    assert [r["status"] for r in statuses] == ["cancelled", "cancelled"]

