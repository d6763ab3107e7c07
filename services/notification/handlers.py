"""Notification handlers: lifecycle events in, customer messages and their deliveries recorded; commands that
set channel settings, customer preferences and bounces.

A message's deliveries (one per delivery channel the sales channel has on) are recorded in the transaction that
claims the event in the inbox, before anything is sent: the sender (delivery.py) sends what is recorded, so a
redelivered event or a restart sends nothing twice. The (order, kind, reference) key makes a repeated event
produce nothing. Every message links to the order's tracking page (signed, expiring: shared/tracking_links.py)."""

from datetime import UTC, datetime

import asyncpg

from shared.contracts import Contract
from shared.contracts.notification import ConfigureChannel, CustomerNotified, RecordBounce, SetCustomerPreference
from shared.contracts.orders import OrderAccepted, OrderPurged
from shared.logging import get_logger
from shared.messaging.retention import purged_order_ids
from shared.messaging.tracing import headers_of
from shared.messaging.unit_of_work import Message, UnitOfWork
from shared.tracking_links import tracking_links

from . import delivery, store
from .config import notification_settings
from .domain import MessageFacts, delivery_id, facts, notification_id, webhook_event_type
from .store import ChannelSettings, NewDelivery, NewNotification
from .templates import Rendered, Templates

log = get_logger(__name__)
TEMPLATES = Templates()


async def lifecycle_events(uow: UnitOfWork, batch: list[Message[Contract]]) -> None:
    accepted = [m.payload for m in batch if isinstance(m.payload, OrderAccepted)]
    if accepted:
        await store.save_recipients(uow.conn, accepted)
    events = [m for m in batch if not isinstance(m.payload, OrderAccepted)]
    if not events:
        return
    recipients = await store.recipients_of(uow.conn, (m.payload.order_id for m in events))
    for message in events:
        if message.payload.order_id not in recipients:
            uow.refuse(message, "UNKNOWN_ORDER", f"no recipient known for order {message.payload.order_id}")
    known = [m for m in events if m.payload.order_id in recipients]
    channels = await store.channel_settings(uow.conn, {_sales_channel(r) for r in recipients.values()})
    composed = [(m, *_compose(m, recipients[m.payload.order_id], channels)) for m in known]
    new = await store.insert_notifications(uow.conn, [notification for _, notification, _ in composed])
    deliveries = []
    for message, notification, message_deliveries in composed:
        if notification.notification_id in new:
            new.discard(notification.notification_id)  # the same message twice in one batch: once
            deliveries += message_deliveries
            uow.reply(CustomerNotified(notification_id=notification.notification_id, order_id=notification.order_id,
                                       kind=notification.kind, channel="email"), message)
    await _record_deliveries(uow, deliveries, channels)


async def _record_deliveries(uow: UnitOfWork, deliveries: list[NewDelivery],
                             channels: dict[str, ChannelSettings]) -> None:
    """Recorded skipped, or pending with the first attempt leased to this process's sender, which is handed them
    once they are committed."""
    rows = [dict(vars(d), attempts=0) for d in deliveries]  # as a claim reads them, before the attempt is counted
    skipped = await delivery.unwanted(uow.conn, rows, channels) if rows else {}
    lease = delivery.lease_seconds(1, notification_settings())
    pending = await store.insert_deliveries(uow.conn, deliveries, skipped, lease)
    delivery.hand_off(uow, [row for row in rows if row["delivery_id"] in pending], channels, lease)


async def commands(uow: UnitOfWork, batch: list[Message[Contract]]) -> None:
    """Applied in order: a later setting replaces an earlier one."""
    for message in batch:
        match message.payload:
            case ConfigureChannel() as command:
                await store.configure_channel(uow.conn, command)
                log.info("notification.channel_configured", channel=command.channel, email=command.email,
                         webhook=command.webhook_url is not None)
            case SetCustomerPreference() as command:
                await store.set_preference(uow.conn, command)
            case RecordBounce() as command:
                await store.record_bounce(uow.conn, command)


def _sales_channel(recipient: asyncpg.Record) -> str:
    return recipient["channel"] or "web"


def _compose(message: Message, recipient: asyncpg.Record,
             channels: dict[str, ChannelSettings]) -> tuple[NewNotification, list[NewDelivery]]:
    event, channel = message.payload, channels[_sales_channel(recipient)]
    about = facts(event)
    values = {"name": recipient["name"], "channel_order_id": recipient["channel_order_id"],
              "tracking_url": tracking_links().url(event.order_id), **about.values}
    rendered = TEMPLATES.render(about.kind, channel=channel.channel, locale=channel.locale, **values)
    message_id = notification_id(event.order_id, about.kind, about.reference)
    notification = NewNotification(message_id, event.order_id, about.kind, about.reference, recipient["email"],
                                   rendered.subject, rendered.text, message.envelope.id)
    return notification, _deliveries(message, notification, recipient, channel, about, rendered,
                                     values["tracking_url"])


def _deliveries(message: Message, notification: NewNotification, recipient: asyncpg.Record,
                channel: ChannelSettings, about: MessageFacts, rendered: Rendered,
                tracking_url: str) -> list[NewDelivery]:
    customers = [recipient["email"].lower(), *([recipient["customer_id"].lower()] if recipient["customer_id"] else [])]

    def delivery(kind: str, to: str, html: str | None, payload: dict | None) -> NewDelivery:
        return NewDelivery(delivery_id(notification.notification_id, kind), notification.notification_id,
                           notification.order_id, notification.kind, channel.channel, kind, to, customers,
                           rendered.subject, rendered.text, html, payload, message.correlation_id,
                           headers_of(message.trace))

    found = []
    if channel.email:
        found.append(delivery("email", recipient["email"], rendered.html, None))
    if channel.webhook_url:
        found.append(delivery("webhook", channel.webhook_url, None,
                              _webhook_payload(notification, recipient, about, rendered, tracking_url)))
    return found


def _webhook_payload(notification: NewNotification, recipient: asyncpg.Record, about: MessageFacts,
                     rendered: Rendered, tracking_url: str) -> dict:
    """Standard Webhooks' shape: type, timestamp, data. The channel knows its customer: the customer id, no name
    or address (so not the greeting text either)."""
    values = {name: value.isoformat() if hasattr(value, "isoformat") else value
              for name, value in about.values.items()}
    return {"type": webhook_event_type(notification.kind), "timestamp": datetime.now(UTC).isoformat(),
            "data": {"notification_id": str(notification.notification_id), "order_id": str(notification.order_id),
                     "channel_order_id": recipient["channel_order_id"], "customer_id": recipient["customer_id"],
                     "kind": notification.kind, **values, "subject": rendered.subject, "tracking_url": tracking_url}}


async def forget_orders(uow: UnitOfWork, batch: list[Message[OrderPurged]]) -> None:
    await store.forget_orders(uow.conn, purged_order_ids(batch))
