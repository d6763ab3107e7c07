"""What the console reads from the database, with the read-only ops role: open sagas, an order found by id,
channel order id or customer, everything the services know of it, and the dead letters per reason."""

import json
import uuid
from typing import Any

import asyncpg

from shared.db.bootstrap import SERVICES

from . import model

DONE = ("shipped", "delivered", "picked_up", "cancelled")


async def decode_json(conn: asyncpg.Connection) -> None:
    for jsontype in ("json", "jsonb"):
        await conn.set_type_codec(jsontype, encoder=json.dumps, decoder=json.loads, schema="pg_catalog")


async def open_sagas(pool: asyncpg.Pool, limit: int = 500) -> list[model.StuckOrder]:
    rows = await pool.fetch(
        "SELECT o.order_id, o.channel, o.channel_order_id, s.state, "
        "       extract(epoch FROM now() - o.created_at)::float8 AS age, "
        "       extract(epoch FROM now() - s.updated_at)::float8 AS in_step, "
        "       extract(epoch FROM now() - s.deadline_at)::float8 AS past_deadline_by "
        "FROM capture.order_sagas s JOIN capture.orders o USING (order_id) "
        "WHERE s.state <> ALL($1::text[]) "
        "ORDER BY (s.deadline_at < now()) DESC NULLS LAST, o.created_at LIMIT $2", list(DONE), limit)
    return [model.StuckOrder(str(r["order_id"]), r["channel"], r["channel_order_id"], r["state"], r["age"],
                             r["in_step"], r["past_deadline_by"]) for r in rows]


async def steps(pool: asyncpg.Pool) -> list[asyncpg.Record]:
    """Open orders per saga step, with the oldest's age."""
    return await pool.fetch(
        "SELECT s.state, count(*) AS orders, max(extract(epoch FROM now() - o.created_at))::float8 AS oldest "
        "FROM capture.order_sagas s JOIN capture.orders o USING (order_id) WHERE s.state <> ALL($1::text[]) "
        "GROUP BY s.state ORDER BY count(*) DESC", list(DONE))


async def search(pool: asyncpg.Pool, term: str, limit: int = 50) -> list[asyncpg.Record]:
    """By order id, `channel/channel order id`, channel order id or customer id."""
    term = term.strip()
    try:
        order_id = uuid.UUID(term)
    except ValueError:
        order_id = None
    channel, _, channel_order_id = term.partition("/") if "/" in term else (None, "", term)
    return await pool.fetch(
        "SELECT order_id, channel, channel_order_id, customer_id, status, created_at FROM capture.orders "
        "WHERE order_id = $1 OR (channel_order_id = $2 AND ($3::text IS NULL OR channel = $3)) OR customer_id = $4 "
        "ORDER BY created_at DESC LIMIT $5", order_id, channel_order_id, channel, term, limit)


async def order(pool: asyncpg.Pool, order_id: uuid.UUID) -> dict[str, Any] | None:
    """Everything about one order, as the services hold it."""
    found = await pool.fetchrow("SELECT * FROM capture.orders WHERE order_id = $1", order_id)
    if found is None:
        return None
    saga = await pool.fetchrow("SELECT * FROM capture.order_sagas WHERE order_id = $1", order_id)
    view = await pool.fetchval("SELECT view FROM tracking.orders WHERE order_id = $1", order_id)
    return {
        "order": found,
        "saga": saga,
        "trace_id": model.trace_id(_json(saga["trace_context"])) if saga else None,
        "view": _json(view) if view else None,
        "events": await pool.fetch("SELECT at, type, topic, data FROM tracking.events WHERE order_id = $1 "
                                   "ORDER BY at, event_id", order_id),
        "saga_timeline": await pool.fetch("SELECT at, direction, message_type, message_id, saga_state "
                                          "FROM capture.order_timeline WHERE order_id = $1 ORDER BY entry_id",
                                          order_id),
        "fulfilment_orders": await pool.fetch(
            "SELECT fulfillment_order_id, location_id, status, carrier, tracking_number, purchase_order, updated_at "
            "FROM fulfillment.fulfillment_orders WHERE order_id = $1 ORDER BY created_at", order_id),
        "shipments": await pool.fetch(
            "SELECT s.shipment_id, f.location_id, s.carrier, s.tracking_number, s.lines, s.shipped_at "
            "FROM fulfillment.shipments s JOIN fulfillment.fulfillment_orders f USING (fulfillment_order_id) "
            "WHERE f.order_id = $1 ORDER BY s.shipped_at", order_id),
        "returns": await pool.fetch("SELECT return_id, status, return_to, refunded, approved_at FROM capture.returns "
                                    "WHERE order_id = $1 ORDER BY approved_at", order_id),
        "edits": await pool.fetch("SELECT edit_id, created_at, answer FROM capture.order_edits WHERE order_id = $1 "
                                  "ORDER BY created_at", order_id),
        "notifications": await pool.fetch("SELECT kind, channel, status, created_at FROM notification.notifications "
                                          "WHERE order_id = $1 ORDER BY created_at", order_id),
        "routing": await pool.fetch("SELECT decided_at, rule_set, explanation FROM routing.decisions "
                                    "WHERE order_id = $1 ORDER BY decision_id", order_id),
    }


def _json(value: Any) -> Any:
    return json.loads(value) if isinstance(value, str) else value


async def dead_letter_totals(pool: asyncpg.Pool) -> list[asyncpg.Record]:
    """Per service and reason: how many dead letters its consumers wrote, and the latest, from the service's own
    `dead_letters` table (every letter, kept in the same transaction as the DeadLetter event)."""
    return await pool.fetch(" UNION ALL ".join(
        f"(SELECT '{service}' AS service, reason, count(*) AS letters, max(failed_at) AS latest "
        f"FROM {service}.dead_letters GROUP BY reason)" for service in SERVICES) + " ORDER BY service, reason")
