"""Capture handlers: take orders from channels, and drive each order's saga from the other services' replies."""

from shared.contracts import Contract
from shared.contracts.orders import OrderAccepted, PlaceOrder
from shared.logging import get_logger
from shared.messaging.consumer import MessageContext

from . import saga as saga_steps
from . import store
from .validation import order_id_for

log = get_logger(__name__)


async def place_order(ctx: MessageContext, cmd: PlaceOrder) -> None:
    order_id = order_id_for(cmd.channel, cmd.channel_order_id)
    if not await store.insert_order(ctx.conn, order_id, cmd):
        log.info("capture.duplicate_order", order_id=str(order_id), channel=cmd.channel)
        await store.record(ctx.conn, order_id, "note", "duplicate " + cmd.message_type, ctx.envelope.id, None)
        return
    initial = saga_steps.Saga(order_id=order_id, state="new", lines=tuple(cmd.lines), delivery=cmd.delivery)
    step = saga_steps.start(initial)
    await store.record(ctx.conn, order_id, "in", cmd.message_type, ctx.envelope.id, step.saga.state)
    accepted = OrderAccepted(order_id=order_id, channel=cmd.channel, channel_order_id=cmd.channel_order_id,
                             customer=cmd.customer, lines=cmd.lines, currency=cmd.currency, delivery=cmd.delivery)
    await _apply(ctx, step.saga, [accepted, *step.messages])
    log.info("capture.order_accepted", order_id=str(order_id), lines=len(cmd.lines))


async def saga_reply(ctx: MessageContext, reply: Contract) -> None:
    order_id = reply.order_id
    current = await store.load_saga(ctx.conn, order_id)
    if current is None:
        raise LookupError(f"no saga for order {order_id}")
    step = saga_steps.advance(current, reply)
    if step is None:
        log.info("saga.reply_ignored", state=current.state, reply=reply.message_type)
        await store.record(ctx.conn, order_id, "note", "ignored " + reply.message_type, ctx.envelope.id, current.state)
        return
    await store.record(ctx.conn, order_id, "in", reply.message_type, ctx.envelope.id, step.saga.state)
    await _apply(ctx, step.saga, step.messages)
    if step.saga.state != current.state:
        log.info("saga.advanced", order_id=str(order_id), previous=current.state, state=step.saga.state)


async def _apply(ctx: MessageContext, saga: saga_steps.Saga, messages: list[Contract]) -> None:
    await store.save_saga(ctx.conn, saga)
    for message in messages:
        ctx.emit(message)
        await store.record(ctx.conn, saga.order_id, "out", message.message_type, ctx.staged[-1].event_id, saga.state)
