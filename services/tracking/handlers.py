"""Tracking handlers: every event of an order's life goes on its timeline, its view is recomputed, and its history
so far is published on the compacted history topic (what rebuilds read once the other topics have let it go)."""

from datetime import datetime
from uuid import UUID

from shared.contracts import Contract
from shared.contracts.order_rules import order_id_for
from shared.contracts.orders import OrderRejected
from shared.contracts.tracking import OrderHistory, TrackedEvent
from shared.messaging.unit_of_work import Message, UnitOfWork

from . import store
from .domain import TimelineEvent, redacted


async def record_events(uow: UnitOfWork, batch: list[Message[Contract]]) -> None:
    events = [timeline_event(m.payload, m.envelope.id, m.envelope.time) for m in batch]
    changed = await store.record_events(uow.conn, events)
    last_cause = {event.order_id: message for event, message in zip(events, batch, strict=True)}
    for order_id, history in changed.items():
        uow.reply(history_of(order_id, history), last_cause[order_id])


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
