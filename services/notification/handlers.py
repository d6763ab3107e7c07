"""Notification handlers: lifecycle events in, customer messages recorded (SMTP/webhook delivery comes later).

A batch at a time: recipients learnt from OrderAccepted are stored together, and the batch's messages are
inserted in one statement; the (order, kind) key makes a repeated event produce nothing."""

import uuid
from dataclasses import dataclass

import asyncpg

from shared.contracts import Contract
from shared.contracts.common import Line
from shared.contracts.notification import CustomerNotified
from shared.contracts.orders import (
    OrderAccepted,
    OrderBackordered,
    OrderCancelled,
    OrderConfirmed,
    OrderDelivered,
    OrderLinesCancelled,
    OrderPickedUp,
    OrderReadyForPickup,
    OrderShipped,
)
from shared.logging import get_logger
from shared.messaging.unit_of_work import Message, UnitOfWork

from .templates import render

log = get_logger(__name__)


def _values(event: Contract) -> tuple[str, dict[str, str]]:
    """The notification kind and template values for a lifecycle event."""
    match event:
        case OrderConfirmed():
            return "order_confirmed", {}
        case OrderBackordered():
            return "order_backordered", {"what": _described(event.short),
                                         "when": f"by {event.expected_on:%d %B %Y}" if event.expected_on else
                                         "as soon as it arrives"}
        case OrderShipped():
            return "order_shipped", {"carrier": event.carrier, "tracking_number": event.tracking_number,
                                     "what": "has shipped" if event.complete and not event.lines else
                                     f"({_described(event.lines)}) {'has' if event.complete else 'is partly'} "
                                     "shipped"}
        case OrderLinesCancelled():
            return "order_lines_cancelled", {"what": _described(event.lines)}
        case OrderDelivered():
            return "order_delivered", {}
        case OrderReadyForPickup():
            return "order_ready_for_pickup", {"store_id": event.store_id}
        case OrderPickedUp():
            return "order_picked_up", {"store_id": event.store_id}
        case OrderCancelled():
            return "order_cancelled", {"reason": event.reason.code.replace("_", " ").lower()}
    raise TypeError(f"no notification for {event.message_type}")


def _described(lines: list[Line]) -> str:
    return ", ".join(f"{line.quantity} x {line.sku}" for line in lines)


def _reference(event: Contract) -> str:
    """What tells two messages of one kind for one order apart: each shipment of a partial delivery."""
    return str(event.shipment_id) if isinstance(event, OrderShipped) and event.shipment_id else ""


@dataclass(frozen=True)
class Notification:
    cause: Message
    notification_id: uuid.UUID
    order_id: uuid.UUID
    kind: str
    reference: str
    recipient: str
    subject: str
    body: str


async def lifecycle_events(uow: UnitOfWork, batch: list[Message[Contract]]) -> None:
    accepted = [m.payload for m in batch if isinstance(m.payload, OrderAccepted)]
    if accepted:
        await uow.conn.execute(
            "INSERT INTO recipients (order_id, channel_order_id, email, name) "
            "SELECT * FROM unnest($1::uuid[], $2::text[], $3::text[], $4::text[]) ON CONFLICT DO NOTHING",
            [e.order_id for e in accepted], [e.channel_order_id for e in accepted],
            [e.customer.email for e in accepted], [e.customer.name for e in accepted],
        )
    events = [m for m in batch if not isinstance(m.payload, OrderAccepted)]
    if not events:
        return
    rows = await uow.conn.fetch("SELECT * FROM recipients WHERE order_id = ANY($1)",
                                list({m.payload.order_id for m in events}))
    recipients = {r["order_id"]: r for r in rows}
    for message in events:
        if message.payload.order_id not in recipients:
            uow.refuse(message, "UNKNOWN_ORDER", f"no recipient known for order {message.payload.order_id}")
    notifications = [_compose(m, recipients[m.payload.order_id])
                     for m in events if m.payload.order_id in recipients]
    created = await uow.conn.fetch(
        """INSERT INTO notifications (notification_id, order_id, kind, reference, channel, recipient, subject, body,
                                      source_event_id)
           SELECT n, o, k, ref, 'email', r, s, b, e
           FROM unnest($1::uuid[], $2::uuid[], $3::text[], $4::text[], $5::text[], $6::text[], $7::text[],
                       $8::uuid[])
             AS t(n, o, k, ref, r, s, b, e)
           ON CONFLICT DO NOTHING RETURNING notification_id""",
        [n.notification_id for n in notifications], [n.order_id for n in notifications],
        [n.kind for n in notifications], [n.reference for n in notifications], [n.recipient for n in notifications],
        [n.subject for n in notifications], [n.body for n in notifications],
        [n.cause.envelope.id for n in notifications],
    )
    new = {r["notification_id"] for r in created}
    for n in notifications:
        if n.notification_id in new:
            new.discard(n.notification_id)
            uow.reply(CustomerNotified(notification_id=n.notification_id, order_id=n.order_id, kind=n.kind,
                                       channel="email"), n.cause)


def _compose(message: Message, recipient: asyncpg.Record) -> Notification:
    event = message.payload
    kind, values = _values(event)
    reference = _reference(event)
    subject, body = render(kind, name=recipient["name"], channel_order_id=recipient["channel_order_id"], **values)
    notification_id = uuid.uuid5(event.order_id, f"{kind}:{reference}" if reference else kind)
    return Notification(message, notification_id, event.order_id, kind, reference, recipient["email"], subject, body)
