"""Tracking handlers: every event of an order's life goes on its timeline and its view is recomputed; once the
order's events have been quiet for a while, its history so far is published on the compacted history topic (what
rebuilds read once the other topics have let it go)."""

from datetime import datetime
from uuid import UUID

from shared.contracts import Contract
from shared.contracts.order_rules import order_id_for
from shared.contracts.orders import OrderPurged, OrderRejected
from shared.contracts.topics import TRACKING_ORDER_HISTORY
from shared.contracts.tracking import OrderHistory, TrackedEvent
from shared.messaging.retention import purged_order_ids
from shared.messaging.retry import run_in_batches
from shared.messaging.tracing import continuing, headers_of
from shared.messaging.unit_of_work import Begin, Message, UnitOfWork

from . import store
from .domain import TimelineEvent, redacted


async def record_events(uow: UnitOfWork, batch: list[Message[Contract]]) -> None:
    events = [timeline_event(m.payload, m.envelope.id, m.envelope.time) for m in batch]
    changed = await store.record_events(uow.conn, events)
    last_cause = {event.order_id: message for event, message in zip(events, batch, strict=True)}
    if changed:
        await store.history_changed(uow.conn, [
            store.HistoryDue(order_id, cause.correlation_id, cause.envelope.id, headers_of(cause.trace))
            for order_id, cause in last_cause.items() if order_id in changed])


async def publish_histories(begin: Begin, interval: float = 1.0, batch: int = 500) -> None:
    """Background task: publish the history of each order whose events have been quiet (OMS_HISTORY_QUIET_SECONDS),
    once for all the events since its last publication. Several tracking instances may run it."""
    await run_in_batches("history-publication", lambda: _publish_due(begin, batch), batch, interval)


async def _publish_due(begin: Begin, batch: int) -> int:
    async with begin() as uow:
        due = await store.claim_due_histories(uow.conn, uow.settings.history_quiet_seconds, batch)
        if not due:
            return 0
        histories = await store.events_by_order(uow.conn, [d.order_id for d in due])
        for d in due:
            with continuing(d.headers, "tracking history", {"oms.order_id": str(d.order_id)}) as trace:
                uow.emit(history_of(d.order_id, histories[d.order_id]), correlation_id=d.correlation_id,
                         causation_id=str(d.causation_id), trace=trace)
    return len(due)


async def forget_orders(uow: UnitOfWork, batch: list[Message[OrderPurged]]) -> None:
    """Orders past their retention leave the read model, and their histories the compacted topic (a tombstone
    each), so that no rebuild brings them back."""
    order_ids = purged_order_ids(batch)
    await store.forget_orders(uow.conn, order_ids)
    for order_id in order_ids:
        uow.forget(TRACKING_ORDER_HISTORY, str(order_id))


def timeline_event(payload: Contract, event_id: UUID, at: datetime) -> TimelineEvent:
    type_ = type(payload).__name__
    return TimelineEvent(event_id=event_id, order_id=_order_id(payload), at=at, type=type_, topic=payload.topic,
                         data=redacted(type_, payload.model_dump(mode="json")))


def history_of(order_id: UUID, events: list[TimelineEvent]) -> OrderHistory:
    return OrderHistory(order_id=order_id, events=[
        TrackedEvent(event_id=e.event_id, at=e.at, type=e.type, topic=e.topic, data=e.data)
        for e in sorted(events, key=TimelineEvent.sort_key)])


def events_of(history: OrderHistory) -> list[TimelineEvent]:
    return [TimelineEvent(event_id=e.event_id, order_id=history.order_id, at=e.at, type=e.type, topic=e.topic,
                          data=e.data) for e in history.events]


def _order_id(payload: Contract) -> UUID:
    if isinstance(payload, OrderRejected) and payload.order_id is None:  # capture always names it; older ones may not
        return order_id_for(payload.channel, payload.channel_order_id)
    return payload.order_id
