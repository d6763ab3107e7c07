"""Capture handlers: take orders and cancellations from channels, and drive each order's saga from the other
services' replies and from its own deadlines.

Orders and saga replies are handled a batch at a time: the batch's sagas are read in one statement, every
message is applied in order to the sagas in memory (pure functions, saga.py), and the new states and timeline
entries are written in one statement each.
"""

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field
from uuid import UUID

import asyncpg

from shared.contracts import Contract
from shared.contracts.common import ReasonCode
from shared.contracts.orders import CancelOrder, OrderAccepted, OrderCancellationRejected, PlaceOrder
from shared.db import ACQUIRE_TIMEOUT
from shared.logging import get_logger
from shared.messaging import outbox
from shared.messaging.consumer import MessageContext, handles_batches
from shared.messaging.outbox import OutboxRow
from shared.messaging.retry import run_forever
from shared.settings import settings

from . import saga as saga_steps
from . import store
from .validation import order_id_for

log = get_logger(__name__)

Emit = Callable[[Contract, str], OutboxRow]


@dataclass
class Journal:
    """The sagas a batch changed and what happened to their orders, written in two statements at the end."""

    sagas: dict[UUID, tuple[saga_steps.Saga, str]] = field(default_factory=dict)
    timeline: list[store.TimelineEntry] = field(default_factory=list)

    def step(self, step: saga_steps.Step, correlation_id: str, emit: Emit, cause: tuple[str, str, UUID | None]) -> None:
        saga = step.saga
        self.sagas[saga.order_id] = (saga, correlation_id)
        self.timeline.append(store.TimelineEntry(saga.order_id, *cause, saga.state))
        for message in step.messages:
            row = emit(message, correlation_id)
            self.timeline.append(store.TimelineEntry(saga.order_id, "out", message.message_type, row.event_id,
                                                     saga.state))

    def note(self, order_id: UUID, text: str, message_id: UUID | None, state: str | None) -> None:
        self.timeline.append(store.TimelineEntry(order_id, "note", text, message_id, state))

    async def flush(self, conn: asyncpg.Connection) -> None:
        if self.sagas:
            await store.save_sagas(conn, list(self.sagas.values()), settings().saga_step_timeout_seconds)
        await store.record(conn, self.timeline)


@handles_batches
async def place_orders(conn: asyncpg.Connection, batch: list[MessageContext]) -> None:
    ids = [order_id_for(ctx.payload.channel, ctx.payload.channel_order_id) for ctx in batch]
    new = await store.insert_orders(conn, [(order_id, ctx.payload) for order_id, ctx in zip(ids, batch, strict=True)])
    journal = Journal()
    for order_id, ctx in zip(ids, batch, strict=True):
        cmd: PlaceOrder = ctx.payload
        if order_id not in new:
            log.info("capture.duplicate_order", order_id=str(order_id), event_id=str(ctx.envelope.id))
            journal.note(order_id, "duplicate " + cmd.message_type, ctx.envelope.id, None)
            continue
        new.discard(order_id)  # the same order twice in one batch: the second is a duplicate
        step = saga_steps.start(saga_steps.Saga(order_id=order_id, state="new", lines=tuple(cmd.lines),
                                                delivery=cmd.delivery, channel=cmd.channel,
                                                channel_order_id=cmd.channel_order_id))
        accepted = OrderAccepted(order_id=order_id, channel=cmd.channel, channel_order_id=cmd.channel_order_id,
                                 customer=cmd.customer, lines=cmd.lines, currency=cmd.currency, delivery=cmd.delivery)
        step = saga_steps.Step(step.saga, [accepted, *step.messages])
        journal.step(step, ctx.correlation_id, ctx.emit, ("in", cmd.message_type, ctx.envelope.id))
    await journal.flush(conn)


async def cancel_order(ctx: MessageContext, cmd: CancelOrder) -> None:
    order_id = await store.find_order_id(ctx.conn, cmd.channel, cmd.channel_order_id)
    loaded = (await store.load_sagas(ctx.conn, [order_id])).get(order_id) if order_id else None
    if not loaded:
        ctx.emit(OrderCancellationRejected(order_id=order_id_for(cmd.channel, cmd.channel_order_id),
                                           channel=cmd.channel, channel_order_id=cmd.channel_order_id,
                                           reason=ReasonCode(code="UNKNOWN_ORDER")))
        return
    current, correlation_id = loaded
    journal = Journal()
    journal.step(saga_steps.request_cancel(current, cmd.reason), correlation_id, ctx.emit,
                 ("in", cmd.message_type, ctx.envelope.id))
    await journal.flush(ctx.conn)


@handles_batches
async def saga_replies(conn: asyncpg.Connection, batch: list[MessageContext]) -> None:
    sagas = await store.load_sagas(conn, list({ctx.payload.order_id for ctx in batch}))
    journal = Journal()
    for ctx in batch:
        reply = ctx.payload
        if reply.order_id not in sagas:
            raise LookupError(f"no saga for order {reply.order_id}")
        current, correlation_id = sagas[reply.order_id]
        step = saga_steps.advance(current, reply)
        if step is None:
            log.info("saga.reply_ignored", order_id=str(reply.order_id), event_id=str(ctx.envelope.id),
                     correlation_id=correlation_id, state=current.state, reply=reply.message_type)
            journal.note(reply.order_id, "ignored " + reply.message_type, ctx.envelope.id, current.state)
            continue
        sagas[reply.order_id] = (step.saga, correlation_id)
        journal.step(step, correlation_id, ctx.emit, ("in", reply.message_type, ctx.envelope.id))
    await journal.flush(conn)


async def expire_deadlines(pool: asyncpg.Pool, interval: float = 0.5, batch: int = 200) -> None:
    """Background task: act on saga steps whose deadline passed. The deadlines live in the saga rows, so a
    restart loses none; SKIP LOCKED lets several capture instances share the work."""
    async def scan() -> None:
        while True:
            if await _expire_due(pool, batch) < batch:
                await asyncio.sleep(interval)

    await run_forever("saga-deadlines", scan)


async def _expire_due(pool: asyncpg.Pool, batch: int) -> int:
    async with pool.acquire(timeout=ACQUIRE_TIMEOUT) as conn, conn.transaction():
        due = await store.due_sagas(conn, batch)
        rows: list[OutboxRow] = []

        def emit(payload: Contract, correlation_id: str) -> OutboxRow:
            rows.append(outbox.stage(payload, source="oms/capture", correlation_id=correlation_id))
            return rows[-1]

        journal = Journal()
        for current, correlation_id in due:
            step = saga_steps.on_timeout(current)
            log.warning("saga.step_timed_out", order_id=str(current.order_id), correlation_id=correlation_id,
                        state=current.state, attempts=current.attempts, next_state=step.saga.state)
            journal.step(step, correlation_id, emit, ("note", f"deadline passed in {current.state}", None))
        await journal.flush(conn)
        await outbox.write(conn, rows, "capture")
        return len(due)
