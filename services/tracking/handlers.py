"""Tracking handlers: every event of an order's life goes on its timeline, and its view is recomputed."""

from shared.contracts import Contract
from shared.contracts.order_rules import order_id_for
from shared.contracts.orders import OrderRejected
from shared.messaging.unit_of_work import Message, UnitOfWork

from . import store
from .domain import TimelineEvent, redacted


async def record_events(uow: UnitOfWork, batch: list[Message[Contract]]) -> None:
    await store.record_events(uow.conn, [timeline_event(m.payload, m.envelope.id, m.envelope.time) for m in batch])


def timeline_event(payload: Contract, event_id, at) -> TimelineEvent:
    type_ = type(payload).__name__
    return TimelineEvent(event_id=event_id, order_id=_order_id(payload), at=at, type=type_, topic=payload.topic,
                         data=redacted(type_, payload.model_dump(mode="json")))


def _order_id(payload: Contract):
    if isinstance(payload, OrderRejected) and payload.order_id is None:  # capture always names it; older ones may not
        return order_id_for(payload.channel, payload.channel_order_id)
    return payload.order_id
