"""Notification handlers: lifecycle events in, customer messages recorded (SMTP/webhook delivery comes later)."""

import uuid

from shared.contracts.notification import CustomerNotified
from shared.contracts.orders import OrderAccepted, OrderCancelled, OrderConfirmed, OrderShipped
from shared.logging import get_logger
from shared.messaging.consumer import MessageContext

from .templates import render

log = get_logger(__name__)


async def remember_recipient(ctx: MessageContext, event: OrderAccepted) -> None:
    await ctx.conn.execute(
        "INSERT INTO recipients (order_id, channel_order_id, email, name) VALUES ($1, $2, $3, $4) "
        "ON CONFLICT DO NOTHING",
        event.order_id, event.channel_order_id, event.customer.email, event.customer.name,
    )


async def order_confirmed(ctx: MessageContext, event: OrderConfirmed) -> None:
    await _notify(ctx, event.order_id, "order_confirmed")


async def order_shipped(ctx: MessageContext, event: OrderShipped) -> None:
    await _notify(ctx, event.order_id, "order_shipped", carrier=event.carrier, tracking_number=event.tracking_number)


async def order_cancelled(ctx: MessageContext, event: OrderCancelled) -> None:
    await _notify(ctx, event.order_id, "order_cancelled", reason=event.reason.code.replace("_", " ").lower())


async def _notify(ctx: MessageContext, order_id: uuid.UUID, kind: str, **values: str) -> None:
    recipient = await ctx.conn.fetchrow("SELECT * FROM recipients WHERE order_id = $1", order_id)
    if recipient is None:
        raise LookupError(f"no recipient known for order {order_id}")
    subject, body = render(kind, name=recipient["name"], channel_order_id=recipient["channel_order_id"], **values)
    notification_id = uuid.uuid5(order_id, kind)
    created = await ctx.conn.fetchval(
        """INSERT INTO notifications (notification_id, order_id, kind, channel, recipient, subject, body, source_event_id)
           VALUES ($1, $2, $3, 'email', $4, $5, $6, $7) ON CONFLICT DO NOTHING RETURNING 1""",
        notification_id, order_id, kind, recipient["email"], subject, body, ctx.envelope.id,
    )
    if created:
        log.debug("notification.recorded", kind=kind)
        ctx.emit(CustomerNotified(notification_id=notification_id, order_id=order_id, kind=kind, channel="email"))
