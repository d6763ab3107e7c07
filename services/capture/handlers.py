"""Capture handlers: take orders and cancellations from channels, and drive each order's saga from the other
services' replies and from its own deadlines.

Orders and saga replies are handled a batch at a time: the batch's sagas are read in one statement, every
message is applied in order to the sagas in memory (pure functions, saga.py), and the new states and timeline
entries are written in one statement each.
"""

from dataclasses import dataclass, field
from decimal import Decimal
from functools import partial
from datetime import UTC, datetime, timedelta
from uuid import UUID

from opentelemetry.context import Context

from shared.contracts import Contract
from shared.contracts.common import ReasonCode
from shared.contracts.order_rules import totals_mismatch
from shared.contracts.orders import (
    CancelOrder,
    CancelOrderLines,
    EditOrder,
    Hold,
    HoldOrder,
    OrderAccepted,
    OrderCancellationRejected,
    OrderEdited,
    OrderEditRefused,
    OrderHeld,
    OrderHoldRefused,
    OrderRejected,
    PlaceOrder,
    ReleaseHold,
    RequestReturn,
    ReturnApproved,
    ReturnRefunded,
    ReturnRefused,
    ReturnRequestLine,
)
from shared.contracts.common import Line, merge_lines
from shared.contracts.fulfillment import ExpectReturn, ReturnReceived
from shared.contracts.inventory import ReceiveStock
from shared.contracts.money import ShipmentAmounts
from shared.contracts.payments import PaymentRefunded
from shared.logging import get_logger
from shared.messaging.retry import run_in_batches
from shared.messaging.tracing import continuing, headers_of, trace_id_of
from shared.messaging.unit_of_work import Begin, Message, UnitOfWork

from . import returns
from . import saga as saga_steps
from . import store
from .edits import edited_order
from .metrics import SAGA_DEADLINE_FAILURES, SagaSteps
from .retention import retention_days
from .validation import order_id_for

log = get_logger(__name__)


@dataclass
class Journal:
    """The sagas a batch changed and what happened to their orders, written in two statements at the end."""

    sagas: dict[UUID, tuple[saga_steps.Saga, str, dict[str, str]]] = field(default_factory=dict)
    timeline: list[store.TimelineEntry] = field(default_factory=list)
    edit_answers: list[tuple[UUID, str, dict]] = field(default_factory=list)
    steps: SagaSteps = field(default_factory=SagaSteps)

    def step(self, uow: UnitOfWork, step: saga_steps.Step, correlation_id: str, cause: Message | None,
             note: str | None = None, trace: Context | None = None) -> None:
        """Record a saga's step, caused by a message (or, without one, by the note's event, in `trace`) and
        send its messages in the saga's own correlation and the cause's trace, which the saga keeps."""
        saga = step.saga
        trace = cause.trace if cause else trace
        self.sagas[saga.order_id] = (saga, correlation_id, headers_of(trace))
        self.steps.step(saga.order_id, saga.state)
        entry = ("in", cause.payload.message_type, cause.envelope.id) if cause else ("note", note, None)
        self.timeline.append(store.TimelineEntry(saga.order_id, *entry, saga.state))
        causation_id = str(cause.envelope.id) if cause else None
        for message in step.messages:
            row = uow.emit(message, correlation_id=correlation_id, causation_id=causation_id, trace=trace,
                           party=saga.channel)
            self.timeline.append(store.TimelineEntry(saga.order_id, "out", message.message_type, row.event_id,
                                                     saga.state))
            if isinstance(message, (OrderEdited, OrderEditRefused)):
                self.edit_answers.append((saga.order_id, message.edit_id, message.model_dump(mode="json")))

    def note(self, order_id: UUID, text: str, message_id: UUID | None, state: str | None) -> None:
        self.timeline.append(store.TimelineEntry(order_id, "note", text, message_id, state))

    async def flush(self, uow: UnitOfWork) -> None:
        if self.sagas:
            before = await store.save_sagas(uow.conn, list(self.sagas.values()),
                                            uow.settings.saga_step_timeout_seconds, self.timeline)
            self.steps.count(uow, before)
        else:
            await store.record(uow.conn, self.timeline)
        await store.record_edit_answers(uow.conn, self.edit_answers)


async def lock_sagas(uow: UnitOfWork, batch: list[Message]) -> None:
    """The sagas of a batch's orders, locked in id order before its handlers run (`Subscription.locks_first`):
    those of commands and returns lock them message by message. Not needed for a batch that only places orders
    (nothing there yet to lock) or only answers sagas (`saga_replies` locks them all in one statement)."""
    if all(isinstance(m.payload, PlaceOrder) for m in batch):
        return
    if all(type(m.payload) in saga_steps.REPLY_TYPES for m in batch):
        return
    await store.lock_sagas(uow.conn, list({order_id for m in batch if (order_id := _order_of(m.payload))}))


def _order_of(payload: Contract) -> UUID | None:
    """The order a message is about: named, or (a channel's command) the one its channel order id maps to."""
    if (order_id := payload.field("order_id")) is not None:
        return order_id
    channel_order_id = payload.field("channel_order_id")
    return order_id_for(payload.field("channel"), channel_order_id) if channel_order_id else None


def _own_channels_only(uow: UnitOfWork, batch: list[Message[PlaceOrder | CancelOrder]]) -> list[Message]:
    """A channel writing on its own topic may speak only for itself: a message claiming another channel is
    refused. Messages on the shared topic come from ops, who may speak for any channel."""
    allowed = []
    for message in batch:
        if message.sender is None or message.payload.channel == message.sender:
            allowed.append(message)
        else:
            uow.refuse(message, "CHANNEL_MISMATCH",
                       f"channel {message.sender} sent {message.payload.message_type} {message.payload.key()}, "
                       "which is another channel's")
    return allowed


def _totals_agree(uow: UnitOfWork, batch: list[Message[PlaceOrder]]) -> list[Message[PlaceOrder]]:
    """An order whose own totals differ from ours is rejected (TOTALS_MISMATCH): the channel would charge the
    customer one amount and the ERP post another."""
    agreed = []
    for message in batch:
        cmd = message.payload
        if (mismatch := totals_mismatch(cmd)) is None:
            agreed.append(message)
            continue
        uow.reply(OrderRejected(order_id=order_id_for(cmd.channel, cmd.channel_order_id), channel=cmd.channel,
                                channel_order_id=cmd.channel_order_id, reasons=[mismatch]), message)
    return agreed


async def _not_past_retention(uow: UnitOfWork, batch: list[Message[PlaceOrder]]) -> list[Message[PlaceOrder]]:
    """An order sent longer ago than the order retention (a channel's topic replayed, a year-old retry), which
    capture does not know, is rejected (ORDER_TOO_OLD): it may be an order already purged, which would otherwise be
    placed, and shipped, again. One it still knows is a duplicate as any other."""
    days = retention_days(uow.settings)
    cutoff = datetime.now(UTC) - timedelta(days=days)
    stale = [m for m in batch if m.envelope.time < cutoff]
    if not stale:
        return batch
    known = await store.known_orders(uow.conn, [_order_id(m.payload) for m in stale])
    too_old = [m for m in stale if _order_id(m.payload) not in known]
    for message in too_old:
        reason = ReasonCode(code="ORDER_TOO_OLD", detail=f"sent {message.envelope.time.isoformat()}, longer ago than "
                                                         f"the order retention ({days:g} days): it may have been "
                                                         "purged")
        uow.reply(OrderRejected(order_id=_order_id(message.payload), channel=message.payload.channel,
                                channel_order_id=message.payload.channel_order_id, reasons=[reason]), message)
    return [m for m in batch if not any(m is old for old in too_old)]


def _order_id(cmd: PlaceOrder) -> UUID:
    return order_id_for(cmd.channel, cmd.channel_order_id)


async def _held_by_rule(uow: UnitOfWork, batch: list[Message[PlaceOrder]]) -> set[str]:
    """The channel orders a rule holds: a first order (of a customer new to the channel) worth more than
    OMS_HOLD_NEW_CUSTOMER_ABOVE waits for a fraud review."""
    threshold = uow.settings.hold_new_customer_above
    if threshold is None:
        return set()
    large = [m.payload for m in batch if m.payload.computed_totals().total > threshold]
    held = set()
    for channel in {cmd.channel for cmd in large}:
        known = await store.known_customers(uow.conn, channel, [c.customer.customer_id for c in large])
        held |= {cmd.key() for cmd in large if cmd.channel == channel and cmd.customer.customer_id not in known}
    return held


NEW_CUSTOMER_HOLD = Hold(reason="fraud_review", placed_by="rule:new-customer-order-value",
                         note="a new customer's first order above OMS_HOLD_NEW_CUSTOMER_ABOVE")


async def place_orders(uow: UnitOfWork, batch: list[Message[PlaceOrder]]) -> None:
    batch = await _not_past_retention(uow, _totals_agree(uow, _own_channels_only(uow, batch)))
    held = await _held_by_rule(uow, batch)
    ids = [order_id_for(m.payload.channel, m.payload.channel_order_id) for m in batch]
    new = await store.insert_orders(uow.conn, [(order_id, m.payload) for order_id, m in zip(ids, batch, strict=True)])
    purged = await _refuse_purged(uow, [(i, m) for i, m in zip(ids, batch, strict=True) if i not in new])
    journal = Journal()
    for order_id, message in zip(ids, batch, strict=True):
        cmd = message.payload
        if order_id in purged:
            continue
        if order_id not in new:
            log.info("capture.duplicate_order", order_id=str(order_id), event_id=str(message.envelope.id),
                     trace_id=message.trace_id)
            journal.note(order_id, "duplicate " + cmd.message_type, message.envelope.id, None)
            continue
        new.discard(order_id)  # the same order twice in one batch: the second is a duplicate
        _start(uow, journal, order_id, cmd, message, message.correlation_id, cmd.key() in held)
    await journal.flush(uow)


async def _refuse_purged(uow: UnitOfWork, not_new: list[tuple[UUID, Message[PlaceOrder]]]) -> set[UUID]:
    """An order that is not new may be one capture purged (a channel's resend, written afresh, of an order closed
    longer than the retention ago): refused with ORDER_PURGED rather than taken for a duplicate. Returns those ids."""
    purged = await store.purged_orders(uow.conn, [order_id for order_id, _ in not_new]) if not_new else {}
    for order_id, message in not_new:
        if order_id in purged:
            cmd = message.payload
            uow.reply(OrderRejected(order_id=order_id, channel=cmd.channel, channel_order_id=cmd.channel_order_id,
                                    reasons=[_purged(purged[order_id])]), message)
    return set(purged)


async def _unknown(uow: UnitOfWork, channel: str, channel_order_id: str) -> ReasonCode:
    """Why a channel's command names no order capture has: it never had it, or it has purged it."""
    order_id = order_id_for(channel, channel_order_id)
    purged = await store.purged_orders(uow.conn, [order_id])
    return _purged(purged[order_id]) if order_id in purged else ReasonCode(code="UNKNOWN_ORDER")


def _purged(when: datetime) -> ReasonCode:
    return ReasonCode(code="ORDER_PURGED",
                      detail=f"closed longer than the order retention ago and purged {when.isoformat()}")


def _start(uow: UnitOfWork, journal: "Journal", order_id: UUID, cmd: PlaceOrder, cause: Message,
           correlation_id: str, held: bool = False) -> None:
    """A new order: accepted, and its saga started (on hold when a rule says so)."""
    step = saga_steps.start(saga_steps.Saga(order_id=order_id, state="new", lines=tuple(cmd.lines),
                                            delivery=cmd.delivery, channel=cmd.channel,
                                            channel_order_id=cmd.channel_order_id,
                                            order_value=saga_steps.order_value(cmd.lines),
                                            backorder_skus=tuple(cmd.backorder_skus()),
                                            placed=cmd.model_dump(mode="json"),
                                            holds=(NEW_CUSTOMER_HOLD,) if held else ()))
    accepted = OrderAccepted(order_id=order_id, channel=cmd.channel, channel_order_id=cmd.channel_order_id,
                             customer=cmd.customer, lines=cmd.lines, currency=cmd.currency, delivery=cmd.delivery,
                             shipping=cmd.shipping, shipping_tax=cmd.shipping_tax,
                             prices_include_tax=cmd.prices_include_tax, totals=cmd.computed_totals(),
                             payment=cmd.payment)
    told = [OrderHeld(order_id=order_id, hold=NEW_CUSTOMER_HOLD)] if step.saga.holds else []
    journal.step(uow, saga_steps.Step(step.saga, [accepted, *told, *step.messages]), correlation_id, cause)


async def cancel_orders(uow: UnitOfWork, batch: list[Message[CancelOrder]]) -> None:
    for message in _own_channels_only(uow, batch):
        await _cancel(uow, message)


async def _cancel(uow: UnitOfWork, message: Message[CancelOrder]) -> None:
    cmd = message.payload
    order_id = await store.find_order_id(uow.conn, cmd.channel, cmd.channel_order_id)
    loaded = (await store.load_sagas(uow.conn, [order_id])).get(order_id) if order_id else None
    if not loaded:
        uow.reply(OrderCancellationRejected(order_id=order_id_for(cmd.channel, cmd.channel_order_id),
                                            channel=cmd.channel, channel_order_id=cmd.channel_order_id,
                                            reason=await _unknown(uow, cmd.channel, cmd.channel_order_id)), message)
        return
    current, correlation_id = loaded
    journal = Journal()
    journal.step(uow, saga_steps.request_cancel(current, cmd.reason), correlation_id, message)
    await journal.flush(uow)


async def hold_commands(uow: UnitOfWork, batch: list[Message[HoldOrder | ReleaseHold]]) -> None:
    """Holds placed and released by a channel (for its own orders) or by ops."""
    for message in _own_channels_only(uow, batch):
        cmd = message.payload
        order_id = await store.find_order_id(uow.conn, cmd.channel, cmd.channel_order_id)
        loaded = (await store.load_sagas(uow.conn, [order_id])).get(order_id) if order_id else None
        if not loaded:
            uow.reply(OrderHoldRefused(order_id=order_id_for(cmd.channel, cmd.channel_order_id), channel=cmd.channel,
                                       channel_order_id=cmd.channel_order_id,
                                       reason=await _unknown(uow, cmd.channel, cmd.channel_order_id)), message)
            continue
        current, correlation_id = loaded
        step = (saga_steps.hold(current, cmd.hold) if isinstance(cmd, HoldOrder)
                else saga_steps.release_hold(current, cmd.reason, cmd.released_by))
        journal = Journal()
        journal.step(uow, step, correlation_id, message)
        await journal.flush(uow)


async def edit_orders(uow: UnitOfWork, batch: list[Message[EditOrder | CancelOrderLines]]) -> None:
    for message in _own_channels_only(uow, batch):
        await _edit(uow, message)


async def _edit(uow: UnitOfWork, message: Message[EditOrder | CancelOrderLines]) -> None:
    """An edit (or a line cancellation) is started, or refused; the same edit id asked again is answered as
    the first time (once the first is answered), another change under a used edit id is refused EDIT_EXISTS.
    A cancellation of every unit left is the order's cancellation."""
    cmd = message.payload
    order_id = await store.find_order_id(uow.conn, cmd.channel, cmd.channel_order_id)
    loaded = (await store.load_sagas(uow.conn, [order_id])).get(order_id) if order_id else None
    refused = OrderEditRefused(order_id=order_id or order_id_for(cmd.channel, cmd.channel_order_id),
                               channel=cmd.channel, channel_order_id=cmd.channel_order_id, edit_id=cmd.edit_id,
                               reason=ReasonCode(code="UNKNOWN_ORDER"))
    if not loaded:
        uow.reply(refused.model_copy(update={"reason": await _unknown(uow, cmd.channel, cmd.channel_order_id)}),
                  message)
        return
    saga, correlation_id = loaded
    request = {"type": cmd.message_type, **cmd.model_dump(mode="json")}
    earlier = await store.edit_of(uow.conn, order_id, cmd.edit_id)
    journal = Journal()
    if earlier is not None:
        same = earlier["request"] == request
        answer = (refused.model_copy(update={"reason": ReasonCode(code="EDIT_EXISTS")}) if not same
                  else _stored_answer(earlier["answer"]))
        journal.step(uow, saga_steps.Step(saga, [answer] if answer else []), correlation_id, message)
        await journal.flush(uow)
        return
    placed = edited_order(saga.placed, cmd)
    if isinstance(placed, ReasonCode):
        step = saga_steps.Step(saga, [refused.model_copy(update={"reason": placed})])
    elif not placed["lines"]:
        step = saga_steps.request_cancel(saga, cmd.reason)
    else:
        step = saga_steps.request_edit(saga, cmd.edit_id, placed)
    if not _busy(step) and (isinstance(placed, ReasonCode) or placed["lines"]):
        await store.insert_edit(uow.conn, order_id, cmd.edit_id, request)
    journal.step(uow, step, correlation_id, message)
    await journal.flush(uow)


def _busy(step: saga_steps.Step) -> bool:
    """Refused only for now (another step under way): the same edit id may be asked again."""
    return any(isinstance(m, OrderEditRefused) and m.reason.code == "ORDER_BUSY" for m in step.messages)


def _stored_answer(answer: dict | None) -> OrderEdited | OrderEditRefused | None:
    if answer is None:
        return None  # still under way: its answer is on its way
    return (OrderEdited if "totals" in answer else OrderEditRefused).model_validate(answer)


async def request_returns(uow: UnitOfWork, batch: list[Message[RequestReturn]]) -> None:
    for message in _own_channels_only(uow, batch):
        await _request_return(uow, message)


async def _request_return(uow: UnitOfWork, message: Message[RequestReturn]) -> None:
    """Approve (ReturnApproved, and ExpectReturn for the location) or refuse (ReturnRefused) a return; the same
    return asked again gets the same answer."""
    cmd = message.payload
    order_id = await store.find_order_id(uow.conn, cmd.channel, cmd.channel_order_id)
    loaded = (await store.load_sagas(uow.conn, [order_id])).get(order_id) if order_id else None
    refused = ReturnRefused(order_id=order_id or order_id_for(cmd.channel, cmd.channel_order_id), channel=cmd.channel,
                            channel_order_id=cmd.channel_order_id, return_id=cmd.return_id,
                            reason=ReasonCode(code="UNKNOWN_ORDER"))
    if not loaded:
        uow.reply(refused.model_copy(update={"reason": await _unknown(uow, cmd.channel, cmd.channel_order_id)}),
                  message)
        return
    saga, correlation_id = loaded
    existing = await store.returns_of(uow.conn, order_id)
    policy = returns.return_policy(uow.settings.return_policy)
    so_far = returns.OrderSoFar(
        shipped=list(saga.shipped), handed_over_at=saga.handed_over_at,
        shipped_from={line.sku: part.location_id for part in reversed(saga.parts_in(*saga_steps.HANDED_OVER))
                      for line in part.lines},
        in_returns=[Line(sku=line["sku"], quantity=line["quantity"]) for r in existing.values()
                    if r["return_id"] != cmd.return_id for line in r["lines"]])
    if cmd.return_id in existing:
        same = [ReturnRequestLine(**line) for line in existing[cmd.return_id]["lines"]] == list(cmd.lines)
        why = None if same else ReasonCode(code="RETURN_EXISTS", detail="this return id was used for other lines")
        to = existing[cmd.return_id]["return_to"]
    else:
        why = returns.refusal(cmd, so_far, policy, datetime.now(UTC))
        to = None if why else returns.return_to(cmd, so_far, policy)
    journal = Journal()
    if why:
        journal.step(uow, saga_steps.Step(saga, [refused.model_copy(update={"reason": why})]), correlation_id,
                     message)
    else:
        exchange = _exchange_order(saga, cmd)
        exchange_id = order_id_for(exchange.channel, exchange.channel_order_id) if exchange else None
        if cmd.return_id not in existing:
            await store.insert_return(uow.conn, order_id, cmd.return_id, list(cmd.lines), to, exchange_id)
            if exchange and await store.insert_orders(uow.conn, [(exchange_id, exchange)]):
                _start(uow, journal, exchange_id, exchange, message, correlation_id)
        approved = ReturnApproved(order_id=order_id, return_id=cmd.return_id, lines=cmd.lines, return_to=to,
                                  exchange_order_id=exchange_id)
        expect = ExpectReturn(order_id=order_id, return_id=cmd.return_id, location_id=to,
                              lines=[Line(sku=line.sku, quantity=line.quantity) for line in cmd.lines])
        journal.step(uow, saga_steps.Step(saga, [approved, expect]), correlation_id, message)
    await journal.flush(uow)


def _exchange_order(saga: saga_steps.Saga, cmd: RequestReturn) -> PlaceOrder | None:
    """An exchange's replacement: a new order of the channel's, for the same customer and address, reserved now;
    paid by the returned goods (and the difference, settled when they arrive)."""
    if not cmd.exchange:
        return None
    return PlaceOrder.model_validate({
        "channel": saga.channel, "channel_order_id": f"{saga.channel_order_id}-EX-{cmd.return_id}"[:100],
        "customer": saga.placed["customer"], "currency": saga.placed["currency"],
        "lines": [line.model_dump(mode="json") for line in cmd.exchange], "delivery": saga.placed["delivery"],
        "exchange_for": f"{saga.order_id}/{cmd.return_id}"})


async def returns_received(uow: UnitOfWork, batch: list[Message[ReturnReceived]]) -> None:
    """A return arrived: restocked units back into stock (through inventory's receipts), disposed ones written
    off, the units refunded — once per return."""
    for message in batch:
        event = message.payload
        loaded = (await store.load_sagas(uow.conn, [event.order_id])).get(event.order_id)
        earlier = await store.returns_of(uow.conn, event.order_id) if loaded else {}
        this = earlier.get(event.return_id)
        if this is None or this["status"] != "approved":
            uow.refuse(message, "UNKNOWN_RETURN", f"no approved return {event.return_id} of order {event.order_id}")
            continue
        saga, correlation_id = loaded
        refunded_before = [Line(**line) for r in earlier.values() if r["status"] == "received"
                           for line in r["received"]]
        received = [Line(sku=line.sku, quantity=line.quantity) for line in event.lines]
        amounts = returns.refund(saga_steps.billing(saga), received, refunded_before, list(saga.shipped),
                                 returns.return_policy(uow.settings.return_policy),
                                 exchange=this["exchange_order_id"] is not None)
        restocked = merge_lines([Line(sku=r.sku, quantity=r.quantity) for r in event.lines if r.condition == "restock"])
        disposed = merge_lines([Line(sku=d.sku, quantity=d.quantity) for d in event.lines if d.condition == "dispose"])
        difference = await _price_difference(uow, this["exchange_order_id"], amounts)
        await store.record_receipt(uow.conn, event.order_id, event.return_id, received,
                                   amounts.model_dump(mode="json"), event.received_at, difference)
        messages = [ReceiveStock(receipt_id=f"return:{event.order_id}:{event.return_id}:{line.sku}", sku=line.sku,
                                 location_id=event.location_id, quantity=line.quantity) for line in restocked]
        messages += saga_steps.settle_return(saga, event.return_id, amounts, difference)
        messages.append(ReturnRefunded(order_id=event.order_id, return_id=event.return_id,
                                       location_id=event.location_id, restocked=restocked, disposed=disposed,
                                       refund=amounts, exchange_order_id=this["exchange_order_id"],
                                       price_difference=difference or Decimal(0)))
        journal = Journal()
        journal.step(uow, saga_steps.Step(saga, messages), correlation_id, message)
        await journal.flush(uow)


async def _price_difference(uow: UnitOfWork, exchange_order_id: UUID | None,
                            returned: ShipmentAmounts) -> Decimal | None:
    """An exchange's replacement total minus what came back (None without an exchange)."""
    if exchange_order_id is None:
        return None
    placed = await store.placed_order(uow.conn, exchange_order_id)
    return placed.computed_totals().total - returned.total


async def refunds_paid(uow: UnitOfWork, batch: list[Message[PaymentRefunded]]) -> None:
    for message in batch:
        await store.record_refund(uow.conn, message.payload.order_id, message.payload.refund_id,
                                  message.payload.amount)


async def saga_replies(uow: UnitOfWork, batch: list[Message[Contract]]) -> None:
    sagas = await store.load_sagas(uow.conn, list({m.payload.order_id for m in batch}))
    journal = Journal()
    for message in batch:
        reply = message.payload
        if reply.order_id not in sagas:
            uow.refuse(message, "UNKNOWN_ORDER", f"no saga for order {reply.order_id}")
            continue
        current, correlation_id = sagas[reply.order_id]
        step = saga_steps.advance(current, reply)
        if step is None:
            log.info("saga.reply_ignored", order_id=str(reply.order_id), event_id=str(message.envelope.id),
                     correlation_id=correlation_id, trace_id=message.trace_id, state=current.state,
                     reply=reply.message_type)
            journal.note(reply.order_id, "ignored " + reply.message_type, message.envelope.id, current.state)
            continue
        sagas[reply.order_id] = (step.saga, correlation_id)
        journal.step(uow, step, correlation_id, message)
    await journal.flush(uow)


FAILED_DEADLINE_RETRY_SECONDS = 300


async def expire_deadlines(begin: Begin, interval: float = 0.5, batch: int = 200) -> None:
    """Background task: act on saga steps whose deadline passed. The deadlines live in the saga rows, so a
    restart loses none; SKIP LOCKED lets several capture instances share the work."""
    await run_in_batches("saga-deadlines", lambda: _expire_due(begin, batch), batch, interval)


async def _expire_due(begin: Begin, batch: int) -> int:
    """A saga whose deadline cannot be acted on (a defect) is set aside for a while, logged and counted, so that
    the others due with it still move."""
    async with begin() as uow:
        due = await store.due_sagas(uow.conn, batch)
        journal, failed = Journal(), []
        for current, correlation_id, trace_context in due:
            try:
                step = saga_steps.on_timeout(current, datetime.now(UTC))
            except Exception:
                log.exception("saga.deadline_failed", order_id=str(current.order_id), correlation_id=correlation_id,
                              state=current.state, attempts=current.attempts)
                failed.append(current.order_id)
                continue
            with continuing(trace_context, "saga deadline", {"oms.order_id": str(current.order_id),
                                                             "oms.saga_state": current.state}) as trace:
                log.warning("saga.step_timed_out", order_id=str(current.order_id), correlation_id=correlation_id,
                            trace_id=trace_id_of(trace), state=current.state, attempts=current.attempts,
                            next_state=step.saga.state)
                journal.step(uow, step, correlation_id, None, note=f"deadline passed in {current.state}", trace=trace)
        if failed:
            await store.postpone_deadlines(uow.conn, failed, FAILED_DEADLINE_RETRY_SECONDS)
            uow.after_commit.append(partial(SAGA_DEADLINE_FAILURES.inc, len(failed)))
        await journal.flush(uow)
        return len(due)
