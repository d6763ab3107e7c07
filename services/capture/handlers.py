"""Capture handlers: take orders and cancellations from channels, and drive each order's saga from the other
services' replies and from its own deadlines."""

import asyncio
from collections.abc import Callable

import asyncpg

from shared.contracts import Contract
from shared.contracts.common import ReasonCode
from shared.contracts.orders import CancelOrder, OrderAccepted, OrderCancellationRejected, PlaceOrder
from shared.logging import get_logger
from shared.messaging import outbox
from shared.messaging.consumer import MessageContext
from shared.messaging.outbox import OutboxRow
from shared.messaging.retry import Backoff
from shared.settings import settings

from . import saga as saga_steps
from . import store
from .validation import order_id_for

log = get_logger(__name__)

Emit = Callable[[Contract, str], OutboxRow]


async def place_order(ctx: MessageContext, cmd: PlaceOrder) -> None:
    order_id = order_id_for(cmd.channel, cmd.channel_order_id)
    if not await store.insert_order(ctx.conn, order_id, cmd):
        log.info("capture.duplicate_order", order_id=str(order_id), channel=cmd.channel)
        await store.record(ctx.conn, order_id, [_note("duplicate " + cmd.message_type, ctx, None)])
        return
    new = saga_steps.Saga(order_id=order_id, state="new", lines=tuple(cmd.lines), delivery=cmd.delivery,
                          channel=cmd.channel, channel_order_id=cmd.channel_order_id)
    step = saga_steps.start(new)
    accepted = OrderAccepted(order_id=order_id, channel=cmd.channel, channel_order_id=cmd.channel_order_id,
                             customer=cmd.customer, lines=cmd.lines, currency=cmd.currency, delivery=cmd.delivery)
    await _apply(ctx.conn, step.saga, [accepted, *step.messages], ctx.correlation_id, ctx.emit,
                 _received(cmd, ctx, step.saga.state))
    log.debug("capture.order_accepted", order_id=str(order_id), lines=len(cmd.lines))


async def cancel_order(ctx: MessageContext, cmd: CancelOrder) -> None:
    order_id = await store.find_order_id(ctx.conn, cmd.channel, cmd.channel_order_id)
    loaded = order_id and await store.load_saga(ctx.conn, order_id)
    if not loaded:
        ctx.emit(OrderCancellationRejected(order_id=order_id_for(cmd.channel, cmd.channel_order_id),
                                           channel=cmd.channel, channel_order_id=cmd.channel_order_id,
                                           reason=ReasonCode(code="UNKNOWN_ORDER")))
        return
    current, correlation_id = loaded
    step = saga_steps.request_cancel(current, cmd.reason)
    await _apply(ctx.conn, step.saga, step.messages, correlation_id, ctx.emit, _received(cmd, ctx, step.saga.state))


async def saga_reply(ctx: MessageContext, reply: Contract) -> None:
    order_id = reply.order_id
    loaded = await store.load_saga(ctx.conn, order_id)
    if loaded is None:
        raise LookupError(f"no saga for order {order_id}")
    current, correlation_id = loaded
    step = saga_steps.advance(current, reply)
    if step is None:
        log.info("saga.reply_ignored", state=current.state, reply=reply.message_type)
        await store.record(ctx.conn, order_id, [_note("ignored " + reply.message_type, ctx, current.state)])
        return
    await _apply(ctx.conn, step.saga, step.messages, correlation_id, ctx.emit, _received(reply, ctx, step.saga.state))
    if step.saga.state != current.state:
        log.debug("saga.advanced", previous=current.state, state=step.saga.state)


async def _apply(conn: asyncpg.Connection, saga: saga_steps.Saga, messages: list[Contract], correlation_id: str,
                 emit: Emit, cause: store.TimelineEntry) -> None:
    """Store the saga's new state, send its messages, and write what happened to the order's timeline."""
    await store.save_saga(conn, saga, correlation_id, settings().saga_step_timeout_seconds)
    timeline = [cause]
    for message in messages:
        row = emit(message, correlation_id)
        timeline.append(store.TimelineEntry("out", message.message_type, row.event_id, saga.state))
    await store.record(conn, saga.order_id, timeline)


def _received(message: Contract, ctx: MessageContext, state: str) -> store.TimelineEntry:
    return store.TimelineEntry("in", message.message_type, ctx.envelope.id, state)


def _note(text: str, ctx: MessageContext, state: str | None) -> store.TimelineEntry:
    return store.TimelineEntry("note", text, ctx.envelope.id, state)


async def expire_deadlines(pool: asyncpg.Pool, interval: float = 0.5, batch: int = 200) -> None:
    """Background task: act on saga steps whose deadline passed. The deadlines live in the saga rows, so a
    restart loses none; SKIP LOCKED lets several capture instances share the work."""
    backoff = Backoff()
    while True:
        try:
            handled = await _expire_due(pool, batch)
            backoff.reset()
        except asyncio.CancelledError:
            raise
        except Exception as error:
            log.warning("saga.deadline_scan_failed", error=repr(error))
            await backoff.sleep()
            continue
        if handled < batch:
            await asyncio.sleep(interval)


async def _expire_due(pool: asyncpg.Pool, batch: int) -> int:
    async with pool.acquire() as conn, conn.transaction():
        due = await store.due_sagas(conn, batch)
        rows: list[OutboxRow] = []

        def emit(payload: Contract, correlation_id: str) -> OutboxRow:
            rows.append(outbox.stage(payload, source="oms/capture", correlation_id=correlation_id))
            return rows[-1]

        for current, correlation_id in due:
            step = saga_steps.on_timeout(current)
            log.warning("saga.step_timed_out", order_id=str(current.order_id), correlation_id=correlation_id,
                        state=current.state, attempts=current.attempts, next_state=step.saga.state)
            note = store.TimelineEntry("note", f"deadline passed in {current.state}", None, step.saga.state)
            await _apply(conn, step.saga, step.messages, correlation_id, emit, note)
        await outbox.write(conn, rows, "capture")
        return len(due)
