"""SQL of the notification schema: recipients, settings set by commands, messages and their deliveries."""

import json
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import asyncpg

from shared.contracts.notification import ConfigureChannel, RecordBounce, SetCustomerPreference
from shared.contracts.orders import OrderAccepted


@dataclass(frozen=True)
class ChannelSettings:
    channel: str
    email: bool
    from_address: str | None
    webhook_url: str | None
    webhook_secret: str | None
    locale: str

    @staticmethod
    def default(channel: str) -> "ChannelSettings":
        """A channel nobody configured: email from the service's default address, no webhook."""
        return ChannelSettings(channel, True, None, None, None, "en")


@dataclass(frozen=True)
class NewNotification:
    notification_id: uuid.UUID
    order_id: uuid.UUID
    kind: str
    reference: str
    recipient: str
    subject: str
    body: str
    source_event_id: uuid.UUID


@dataclass(frozen=True)
class NewDelivery:
    delivery_id: uuid.UUID
    notification_id: uuid.UUID
    order_id: uuid.UUID
    kind: str
    sales_channel: str
    channel: str
    recipient: str
    customers: list[str]
    subject: str
    body_text: str
    body_html: str | None
    payload: dict[str, Any] | None
    correlation_id: str
    trace_context: dict[str, str]


async def save_recipients(conn: asyncpg.Connection, accepted: list[OrderAccepted]) -> None:
    await conn.execute(
        "INSERT INTO recipients (order_id, channel_order_id, email, name, channel, customer_id) "
        "SELECT * FROM unnest($1::uuid[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[]) "
        "ON CONFLICT DO NOTHING",
        [e.order_id for e in accepted], [e.channel_order_id for e in accepted],
        [e.customer.email for e in accepted], [e.customer.name for e in accepted],
        [e.channel for e in accepted], [e.customer.customer_id for e in accepted],
    )


async def recipients_of(conn: asyncpg.Connection, order_ids: Iterable[uuid.UUID]) -> dict[uuid.UUID, asyncpg.Record]:
    rows = await conn.fetch("SELECT * FROM recipients WHERE order_id = ANY($1)", list(set(order_ids)))
    return {r["order_id"]: r for r in rows}


async def channel_settings(conn: asyncpg.Connection, channels: Iterable[str]) -> dict[str, ChannelSettings]:
    wanted = set(channels)
    rows = await conn.fetch("SELECT channel, email, from_address, webhook_url, webhook_secret, locale "
                            "FROM channel_settings WHERE channel = ANY($1)", list(wanted))
    found = {r["channel"]: ChannelSettings(**dict(r)) for r in rows}
    return {channel: found.get(channel) or ChannelSettings.default(channel) for channel in wanted}


async def insert_notifications(conn: asyncpg.Connection, rows: list[NewNotification]) -> set[uuid.UUID]:
    """The ids of those not recorded before."""
    created = await conn.fetch(
        """INSERT INTO notifications (notification_id, order_id, kind, reference, channel, recipient, subject, body,
                                      source_event_id)
           SELECT n, o, k, ref, 'email', r, s, b, e
           FROM unnest($1::uuid[], $2::uuid[], $3::text[], $4::text[], $5::text[], $6::text[], $7::text[],
                       $8::uuid[])
             AS t(n, o, k, ref, r, s, b, e)
           ON CONFLICT DO NOTHING RETURNING notification_id""",
        [n.notification_id for n in rows], [n.order_id for n in rows], [n.kind for n in rows],
        [n.reference for n in rows], [n.recipient for n in rows], [n.subject for n in rows],
        [n.body for n in rows], [n.source_event_id for n in rows],
    )
    return {r["notification_id"] for r in created}


async def insert_deliveries(conn: asyncpg.Connection, rows: list[NewDelivery], skipped: dict[uuid.UUID, str],
                            lease_seconds: float) -> set[uuid.UUID]:
    """Record the deliveries: those in `skipped` as skipped with their reason, the others as pending with their
    first attempt counted and leased to this process for `lease_seconds` (it sends them at once: delivery.py,
    "Handed off"). Returns the ids of the pending ones recorded now."""
    if not rows:
        return set()
    recorded = await conn.fetch(
        """INSERT INTO deliveries (delivery_id, notification_id, order_id, kind, sales_channel, channel, recipient,
                                   customers, subject, body_text, body_html, payload, correlation_id, trace_context,
                                   status, skip_reason, finished_at, attempts, next_attempt_at)
           SELECT d, n, o, k, sc, c, r, ARRAY(SELECT jsonb_array_elements_text(cu::jsonb)), su, bt, bh, p, co, tc,
                  CASE WHEN sk IS NULL THEN 'pending' ELSE 'skipped' END, sk,
                  CASE WHEN sk IS NOT NULL THEN now() END, CASE WHEN sk IS NULL THEN 1 ELSE 0 END,
                  now() + make_interval(secs => $16)
           FROM unnest($1::uuid[], $2::uuid[], $3::uuid[], $4::text[], $5::text[], $6::text[], $7::text[],
                       $8::text[], $9::text[], $10::text[], $11::text[], $12::jsonb[], $13::text[], $14::jsonb[],
                       $15::text[]) AS t(d, n, o, k, sc, c, r, cu, su, bt, bh, p, co, tc, sk)
           ON CONFLICT DO NOTHING RETURNING delivery_id, status""",
        [d.delivery_id for d in rows], [d.notification_id for d in rows], [d.order_id for d in rows],
        [d.kind for d in rows], [d.sales_channel for d in rows], [d.channel for d in rows],
        [d.recipient for d in rows], [json.dumps(d.customers) for d in rows], [d.subject for d in rows],
        [d.body_text for d in rows], [d.body_html for d in rows], [d.payload for d in rows],
        [d.correlation_id for d in rows], [d.trace_context for d in rows],
        [skipped.get(d.delivery_id) for d in rows], lease_seconds)
    return {r["delivery_id"] for r in recorded if r["status"] == "pending"}


async def configure_channel(conn: asyncpg.Connection, command: ConfigureChannel) -> None:
    await conn.execute(
        """INSERT INTO channel_settings (channel, email, from_address, webhook_url, webhook_secret, locale)
           VALUES ($1, $2, $3, $4, $5, $6)
           ON CONFLICT (channel) DO UPDATE SET email = EXCLUDED.email, from_address = EXCLUDED.from_address,
             webhook_url = EXCLUDED.webhook_url, webhook_secret = EXCLUDED.webhook_secret,
             locale = EXCLUDED.locale, updated_at = now()""",
        command.channel, command.email, command.from_address, command.webhook_url, command.webhook_secret,
        command.locale)


async def set_preference(conn: asyncpg.Connection, command: SetCustomerPreference) -> None:
    await conn.execute(
        """INSERT INTO customer_preferences (customer, email, webhook) VALUES (lower($1), $2, $3)
           ON CONFLICT (customer) DO UPDATE SET email = EXCLUDED.email, webhook = EXCLUDED.webhook,
             updated_at = now()""",
        command.customer.strip(), command.email, command.webhook)


async def record_bounce(conn: asyncpg.Connection, command: RecordBounce) -> None:
    await conn.execute(
        """INSERT INTO bounces (address, detail) VALUES (lower($1), $2)
           ON CONFLICT (address) DO UPDATE SET detail = EXCLUDED.detail, recorded_at = now()""",
        command.address, command.detail)


async def due_deliveries(conn: asyncpg.Connection, limit: int) -> list[asyncpg.Record]:
    """Pending deliveries whose time has come, locked for this transaction; others' locked rows are skipped."""
    return await conn.fetch(
        """SELECT * FROM deliveries WHERE status = 'pending' AND next_attempt_at <= now()
           ORDER BY next_attempt_at LIMIT $1 FOR UPDATE SKIP LOCKED""", limit)


async def opted_out(conn: asyncpg.Connection, customers: Iterable[str]) -> dict[str, asyncpg.Record]:
    rows = await conn.fetch("SELECT customer, email, webhook FROM customer_preferences WHERE customer = ANY($1)",
                            list(set(customers)))
    return {r["customer"]: r for r in rows}


async def bounced(conn: asyncpg.Connection, addresses: Iterable[str]) -> set[str]:
    rows = await conn.fetch("SELECT address FROM bounces WHERE address = ANY($1)",
                            [a.lower() for a in set(addresses)])
    return {r["address"] for r in rows}


async def skip(conn: asyncpg.Connection, skipped: dict[uuid.UUID, str]) -> None:
    if not skipped:
        return
    await conn.execute(
        """UPDATE deliveries d SET status = 'skipped', skip_reason = s.reason, finished_at = now()
           FROM unnest($1::uuid[], $2::text[]) AS s(id, reason) WHERE d.delivery_id = s.id""",
        list(skipped), list(skipped.values()))


async def lease(conn: asyncpg.Connection, leases: dict[uuid.UUID, float]) -> None:
    """Count the attempt, and hold the delivery for so many seconds: if the sender dies before recording an
    outcome, the delivery comes due again then."""
    await conn.execute(
        """UPDATE deliveries d SET attempts = attempts + 1, next_attempt_at = now() + make_interval(secs => l.secs)
           FROM unnest($1::uuid[], $2::float8[]) AS l(id, secs) WHERE d.delivery_id = l.id""",
        list(leases), list(leases.values()))


async def release(conn: asyncpg.Connection, attempts: dict[uuid.UUID, int]) -> None:
    """Deliveries this process held for an attempt and did not send, due again at once (unless another sender has
    taken them since, their lease having run out)."""
    if not attempts:
        return
    await conn.execute(
        """UPDATE deliveries d SET next_attempt_at = now()
           FROM unnest($1::uuid[], $2::int[]) AS held(id, attempts)
           WHERE d.delivery_id = held.id AND d.attempts = held.attempts AND d.status = 'pending'""",
        list(attempts), list(attempts.values()))


async def record_sent(conn: asyncpg.Connection, attempts: dict[uuid.UUID, int]) -> set[uuid.UUID]:
    """Record deliveries sent, each by the attempt that sent it; returns those recorded (not those another sender
    has taken since, this attempt's lease having run out)."""
    if not attempts:
        return set()
    rows = await conn.fetch(
        """UPDATE deliveries d SET status = 'sent', finished_at = now(), last_error = NULL
           FROM unnest($1::uuid[], $2::int[]) AS sent(id, attempts)
           WHERE d.delivery_id = sent.id AND d.attempts = sent.attempts AND d.status = 'pending'
           RETURNING d.delivery_id""", list(attempts), list(attempts.values()))
    return {row["delivery_id"] for row in rows}


async def record_retry(conn: asyncpg.Connection, delivery_id: uuid.UUID, attempts: int, error: str,
                       delay: float) -> None:
    await conn.execute(
        """UPDATE deliveries SET next_attempt_at = now() + make_interval(secs => $4), last_error = $3
           WHERE delivery_id = $1 AND attempts = $2 AND status = 'pending'""", delivery_id, attempts, error, delay)


async def record_failed(conn: asyncpg.Connection, delivery_id: uuid.UUID, attempts: int, error: str) -> bool:
    return await conn.fetchval(
        """UPDATE deliveries SET status = 'failed', finished_at = now(), last_error = $3
           WHERE delivery_id = $1 AND attempts = $2 AND status = 'pending' RETURNING true""",
        delivery_id, attempts, error) or False


async def clear_bodies(conn: asyncpg.Connection, retention_days: float) -> int:
    """Forget what was said once deliveries ended longer ago than the retention period; the rows (who, when,
    outcome) stay."""
    cleared = await conn.fetch(
        """UPDATE deliveries SET subject = NULL, body_text = NULL, body_html = NULL, payload = NULL,
                                 body_cleared_at = now()
           WHERE body_cleared_at IS NULL AND status <> 'pending'
             AND finished_at < now() - make_interval(secs => $1)
           RETURNING notification_id""", retention_days * 86400)
    await conn.execute(
        """UPDATE notifications n SET subject = NULL, body = NULL
           WHERE n.body IS NOT NULL AND n.created_at < now() - make_interval(secs => $1)
             AND NOT EXISTS (SELECT 1 FROM deliveries d WHERE d.notification_id = n.notification_id
                             AND d.body_cleared_at IS NULL)""", retention_days * 86400)
    return len(cleared)


async def forget_orders(conn: asyncpg.Connection, order_ids: list[uuid.UUID]) -> None:
    """Orders past their retention: their recipients (personal data), messages and deliveries; a customer's
    preferences and bounced addresses are the customer's, not the order's, and stay."""
    await conn.execute("""WITH told AS (DELETE FROM notifications WHERE order_id = ANY($1::uuid[])
                                       RETURNING notification_id),
                               sent AS (DELETE FROM deliveries d USING told t  -- by its indexed notification
                                        WHERE d.notification_id = t.notification_id)
                          DELETE FROM recipients WHERE order_id = ANY($1::uuid[])""", order_ids)
