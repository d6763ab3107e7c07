"""Capture's batches take their orders' saga locks in one order: a batch of channel commands (cancel, hold, edit,
return), applied message by message, locked each order as it came to it, so it could hold one order and wait for
another that a batch of saga replies (locking its orders sorted) held while waiting for the first: a deadlock,
found by Postgres only after `deadlock_timeout` and retried."""

import asyncio
import uuid

import pytest

from ops.waiting import eventually
from services.capture import saga as saga_steps
from services.capture import store
from services.capture.app import SERVICE as CAPTURE
from shared.contracts import wrap
from shared.contracts.common import Line
from shared.contracts.order_rules import order_id_for
from shared.contracts.orders import CancelOrder, Hold, HoldOrder
from shared.contracts.topics import DEAD_LETTERS, ORDER_COMMANDS
from shared.messaging.consumer import Consumer
from shared.messaging.monitor import ConsumerMonitor

from .test_consumer_runtime import raw_record
from .test_saga_deadlines import _order

pytestmark = pytest.mark.integration

PREFIX = "locking-"


@pytest.fixture
async def forged_orders(capture_pool):
    """Two orders in routing, forged straight into capture's tables, removed afterwards with what they staged."""
    ids = []
    async with capture_pool.acquire() as conn:
        for _ in range(2):
            channel_order_id = f"{PREFIX}{uuid.uuid4()}"
            order_id = order_id_for("web", channel_order_id)
            order = _order(order_id).model_copy(update={"channel_order_id": channel_order_id})
            await store.insert_orders(conn, [(order_id, order)])
            saga = saga_steps.Saga(order_id=order_id, state="routing", lines=(Line(sku="SKU-1", quantity=1),),
                                   delivery=order.delivery, channel="web")
            await store.save_sagas(conn, [(saga, f"corr-{order_id}", {})], step_timeout=600)
            ids.append((order_id, channel_order_id))
    yield sorted(ids)
    async with capture_pool.acquire() as conn:
        forged = [order_id for order_id, _ in ids]
        for table in ("order_timeline", "order_sagas", "orders"):
            await conn.execute(f"DELETE FROM {table} WHERE order_id = ANY($1)", forged)
        await conn.execute("DELETE FROM outbox WHERE key = ANY($1)", [str(o) for o in forged])


def command(offset: int, payload) -> object:
    return raw_record(offset, wrap(payload, source="test", correlation_id="c-locking").model_dump_json().encode())


def _hold(channel_order_id: str) -> HoldOrder:
    return HoldOrder(channel="web", channel_order_id=channel_order_id,
                     hold=Hold(reason="manual", placed_by="a locking test"))


class FailuresKept(ConsumerMonitor):
    def __init__(self, service: str, group: str):
        super().__init__(service, group)
        self.failures: list[str] = []

    def failing(self, error: BaseException) -> None:
        self.failures.append(repr(error))
        super().failing(error)


@pytest.mark.parametrize("first", ["cancel", "hold"], ids=["two handlers", "one handler"])
async def test_a_batch_of_commands_never_holds_one_order_while_waiting_for_another(config, capture_pool, admin,
                                                                                  forged_orders, first):
    """Another transaction holds the lower order, as a batch of saga replies locking both would; the commands
    (the higher order's first) wait for it without holding the higher one, so that transaction gets it."""
    (lower, lower_channel_id), (higher, higher_channel_id) = forged_orders
    first_command = (CancelOrder(channel="web", channel_order_id=higher_channel_id) if first == "cancel"
                     else _hold(higher_channel_id))
    group = f"locking-test-{uuid.uuid4().hex[:6]}"
    monitor = FailuresKept("capture", group)
    consumer = Consumer(capture_pool, service="capture", writes=frozenset(CAPTURE.publishes) | {DEAD_LETTERS},
                        group=group, settings=config, monitor=monitor)
    commands = next(sub for sub in CAPTURE.subscriptions if sub.topic == ORDER_COMMANDS)
    async with capture_pool.acquire() as replies:
        async with replies.transaction():
            await store.load_sagas(replies, [lower])
            applying = asyncio.create_task(consumer.process(
                commands, [command(0, first_command), command(1, _hold(lower_channel_id))]))
            await eventually(lambda: waiting_for_a_lock(admin, replies, "order_sagas"),
                             what="the commands waiting for an order")
            await store.load_sagas(replies, [higher])  # would deadlock if the commands held it
        await asyncio.wait_for(applying, 30)
    assert monitor.failures == [], "the batch failed (a deadlock) and was applied again"
    states = await admin.fetch("SELECT order_id, holds FROM capture.order_sagas WHERE order_id = ANY($1)",
                               [lower, higher])
    assert {r["order_id"] for r in states if r["holds"]} >= {lower}, "the batch was applied"


async def waiting_for_a_lock(admin, other, table: str) -> bool:
    """Whether a session but `other` waits for a row of `table` or an advisory lock."""
    return await admin.fetchval(
        "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND pid <> $1 "
        "AND (query LIKE '%' || $2 || '%' OR wait_event = 'advisory')", other.get_server_pid(), table) > 0
