"""SQL of the tracking schema: the events of each order, its view, the channels' API keys and HTTP intake.

The view tables' names are parameters (`Tables`): a rebuild fills fresh ones with the same code, then swaps."""

import hashlib
from dataclasses import dataclass
from datetime import datetime
from uuid import UUID

import asyncpg

from .domain import OrderView, Projection, TimelineEvent, advance, projection


@dataclass(frozen=True)
class Tables:
    events: str = "events"
    orders: str = "orders"


LIVE = Tables()


async def record_events(conn: asyncpg.Connection, events: list[TimelineEvent], tables: Tables = LIVE) -> set[UUID]:
    """Keep the events (each once) and bring the view of every order that got new ones up to date; returns those
    orders. An order's new events are applied to its view as it stands (`advance`); its view is projected from
    all its events again only when it has none yet, or when a new event sorts before the last one applied."""
    await _lock_orders(conn, {e.order_id for e in events})
    new = await conn.fetch(
        f"""INSERT INTO {tables.events} (event_id, order_id, at, type, topic, data)
            SELECT * FROM unnest($1::uuid[], $2::uuid[], $3::timestamptz[], $4::text[], $5::text[], $6::jsonb[])
            ON CONFLICT DO NOTHING RETURNING event_id""",
        [e.event_id for e in events], [e.order_id for e in events], [e.at for e in events],
        [e.type for e in events], [e.topic for e in events], [e.data for e in events])
    kept = {row["event_id"] for row in new}
    new_by_order: dict[UUID, list[TimelineEvent]] = {}
    for event in events:
        if event.event_id in kept:
            new_by_order.setdefault(event.order_id, []).append(event)
    if not new_by_order:
        return set()
    standing = await _stored_views(conn, list(new_by_order), tables)
    advanced = {order_id: advance(*standing[order_id], new_events) if order_id in standing else None
                for order_id, new_events in new_by_order.items()}
    again = [order_id for order_id, projected in advanced.items() if projected is None]
    if again:
        advanced.update({order_id: projection(order_events)
                         for order_id, order_events in (await events_by_order(conn, again, tables)).items()})
    await _store_projections(conn, [p for p in advanced.values() if p is not None], tables)
    return set(new_by_order)


async def _stored_views(conn: asyncpg.Connection, order_ids: list[UUID],
                        tables: Tables) -> dict[UUID, tuple[str, dict]]:
    """The orders' views as stored (JSON text: pydantic reads it in one pass), and where each stands (those that
    have one and know it)."""
    rows = await conn.fetch(f"SELECT order_id, view::text AS view, progress FROM {tables.orders} "
                            "WHERE order_id = ANY($1::uuid[]) AND progress IS NOT NULL", order_ids)
    return {row["order_id"]: (row["view"], row["progress"]) for row in rows}


async def _store_projections(conn: asyncpg.Connection, projections: list[Projection], tables: Tables) -> None:
    if not projections:
        return
    views = [p.view for p in projections]
    # the views' JSON as pydantic writes it, without a dict in between (a third less than dumping to a dict)
    await conn.execute(
        f"""INSERT INTO {tables.orders} (order_id, channel, channel_order_id, customer_id, status, placed_at,
                                         updated_at, view, progress)
            SELECT * FROM unnest($1::uuid[], $2::text[], $3::text[], $4::text[], $5::text[], $6::timestamptz[],
                                 $7::timestamptz[], $8::text[]::jsonb[], $9::jsonb[])
            ON CONFLICT (order_id) DO UPDATE SET customer_id = excluded.customer_id, status = excluded.status,
                placed_at = excluded.placed_at, updated_at = excluded.updated_at, view = excluded.view,
                progress = excluded.progress""",
        [v.order_id for v in views], [v.channel for v in views], [v.channel_order_id for v in views],
        [v.customer_id for v in views], [v.status for v in views], [v.placed_at for v in views],
        [v.updated_at for v in views], [v.model_dump_json() for v in views],
        [p.progress() for p in projections])


async def events_by_order(conn: asyncpg.Connection, order_ids: list[UUID],
                          tables: Tables = LIVE) -> dict[UUID, list[TimelineEvent]]:
    rows = await conn.fetch(f"SELECT * FROM {tables.events} WHERE order_id = ANY($1::uuid[])", order_ids)
    by_order: dict[UUID, list[TimelineEvent]] = {}
    for row in rows:
        by_order.setdefault(row["order_id"], []).append(_event(row))
    return by_order


@dataclass(frozen=True)
class HistoryDue:
    """An order whose history changed since it was last published, and the change that came last."""

    order_id: UUID
    correlation_id: str
    causation_id: UUID
    headers: dict[str, str]  # the trace context of that change


async def history_changed(conn: asyncpg.Connection, changes: list[HistoryDue]) -> None:
    """Mark the orders' histories for publication. Updating a mark that is there locks it until this commits, so a
    publication that starts meanwhile leaves it for the next round instead of publishing without these events."""
    await conn.execute(
        """INSERT INTO history_due (order_id, correlation_id, causation_id, headers)
           SELECT * FROM unnest($1::uuid[], $2::text[], $3::uuid[], $4::jsonb[])
           ON CONFLICT (order_id) DO UPDATE SET correlation_id = excluded.correlation_id,
               causation_id = excluded.causation_id, headers = excluded.headers, last_change = now()""",
        [c.order_id for c in changes], [c.correlation_id for c in changes], [c.causation_id for c in changes],
        [c.headers for c in changes])


async def claim_due_histories(conn: asyncpg.Connection, quiet_seconds: float, limit: int) -> list[HistoryDue]:
    """Take the marks of orders quiet for `quiet_seconds` (or waiting ten times that), oldest first; marks a
    transaction still holds are skipped."""
    rows = await conn.fetch(
        """DELETE FROM history_due WHERE order_id IN (
               SELECT order_id FROM history_due
               WHERE last_change < now() - make_interval(secs => $1)
                  OR first_change < now() - make_interval(secs => $1 * 10)
               ORDER BY first_change LIMIT $2 FOR UPDATE SKIP LOCKED)
           RETURNING order_id, correlation_id, causation_id, headers""", quiet_seconds, limit)
    return [HistoryDue(r["order_id"], r["correlation_id"], r["causation_id"], r["headers"]) for r in rows]


ORDER_LOCKS = 7306  # the advisory lock class of tracking's orders (two-key locks: apart from every one-key lock)


async def _lock_orders(conn: asyncpg.Connection, order_ids: set[UUID]) -> None:
    """The topics are read by one consumer each, concurrently: without a lock, two transactions adding events of
    one order would each recompute its view without the other's events, and the last to commit would win. One
    advisory lock per order (its first 32 bits: a collision only makes two orders wait on each other), taken in
    ascending order; the view is then computed from every event committed before."""
    keys = sorted({int.from_bytes(order_id.bytes[:4], "big", signed=True) for order_id in order_ids})
    await conn.execute("SELECT count(pg_advisory_xact_lock($1, key)) FROM unnest($2::int4[]) AS key",
                       ORDER_LOCKS, keys)


def _event(row: asyncpg.Record) -> TimelineEvent:
    return TimelineEvent(row["event_id"], row["order_id"], row["at"], row["type"], row["topic"], row["data"])


async def order_view(conn: asyncpg.Connection | asyncpg.Pool, channel: str, order_id: UUID) -> OrderView | None:
    view = await conn.fetchval("SELECT view FROM orders WHERE order_id = $1 AND channel = $2", order_id, channel)
    return None if view is None else OrderView.model_validate(view)


async def view_of(pool: asyncpg.Pool, order_id: UUID) -> OrderView | None:
    """An order's view, whichever channel's: for the customer's page, whose signed link names the order."""
    view = await pool.fetchval("SELECT view FROM orders WHERE order_id = $1", order_id)
    return None if view is None else OrderView.model_validate(view)


async def order_id_of(pool: asyncpg.Pool, channel: str, channel_order_id: str) -> UUID | None:
    return await pool.fetchval("SELECT order_id FROM orders WHERE channel = $1 AND channel_order_id = $2",
                               channel, channel_order_id)


async def timeline(pool: asyncpg.Pool, order_id: UUID) -> list[TimelineEvent]:
    rows = await pool.fetch("SELECT * FROM events WHERE order_id = $1", order_id)
    return sorted(map(_event, rows), key=TimelineEvent.sort_key)


@dataclass(frozen=True)
class Search:
    channel: str
    customer_id: str | None
    status: str | None
    placed_from: datetime | None
    placed_to: datetime | None
    limit: int
    after: tuple[datetime, UUID] | None  # the last order of the previous page: newest first, by (placed_at, id)


async def search(pool: asyncpg.Pool, query: Search) -> list[asyncpg.Record]:
    after_at, after_id = query.after or (None, None)
    return await pool.fetch(
        """SELECT order_id, channel_order_id, customer_id, status, placed_at, updated_at FROM orders
           WHERE channel = $1 AND ($2::text IS NULL OR customer_id = $2) AND ($3::text IS NULL OR status = $3)
             AND ($4::timestamptz IS NULL OR placed_at >= $4) AND ($5::timestamptz IS NULL OR placed_at < $5)
             AND ($6::timestamptz IS NULL OR (placed_at, order_id) < ($6, $7::uuid))
           ORDER BY placed_at DESC, order_id DESC LIMIT $8""",
        query.channel, query.customer_id, query.status, query.placed_from, query.placed_to, after_at, after_id,
        query.limit)


def key_hash(key: str) -> bytes:
    return hashlib.sha256(key.encode()).digest()


async def add_api_key(conn: asyncpg.Connection, channel: str, key: str) -> None:
    await conn.execute("INSERT INTO api_keys (key_hash, channel) VALUES ($1, $2)", key_hash(key), channel)


async def channel_of_key(pool: asyncpg.Pool, key: str) -> str | None:
    return await pool.fetchval("SELECT channel FROM api_keys WHERE key_hash = $1", key_hash(key))


@dataclass(frozen=True)
class IntakeRequest:
    channel: str
    idempotency_key: str
    request_hash: bytes
    order_id: UUID
    channel_order_id: str


async def claim_intake(conn: asyncpg.Connection, request: IntakeRequest, status_code: int,
                       answer: dict) -> asyncpg.Record | None:
    """Record the request under its key in the caller's transaction; None if it is new, else the row stored for
    that key (by a request committed before, or one this waits for)."""
    inserted = await conn.fetchval(
        """INSERT INTO intake_requests (channel, idempotency_key, request_hash, order_id, channel_order_id,
                                        status_code, answer)
           VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT DO NOTHING RETURNING true""",
        request.channel, request.idempotency_key, request.request_hash, request.order_id, request.channel_order_id,
        status_code, answer)
    if inserted:
        return None
    return await conn.fetchrow("SELECT * FROM intake_requests WHERE channel = $1 AND idempotency_key = $2",
                               request.channel, request.idempotency_key)


async def channel_order_id_of(pool: asyncpg.Pool, channel: str, order_id: UUID) -> str | None:
    """The channel's own id of one of its orders: from the view, or from an order it placed over HTTP that the
    view does not show yet."""
    return await pool.fetchval(
        """SELECT channel_order_id FROM orders WHERE order_id = $1 AND channel = $2
           UNION ALL SELECT channel_order_id FROM intake_requests WHERE order_id = $1 AND channel = $2 LIMIT 1""",
        order_id, channel)


async def forget_orders(conn: asyncpg.Connection, order_ids: list[UUID]) -> None:
    """Orders past their retention: their timelines, views, histories due and intake records (locked first, as
    an event's recording locks them)."""
    await _lock_orders(conn, set(order_ids))
    await conn.execute("""WITH timeline AS (DELETE FROM events WHERE order_id = ANY($1::uuid[])),
                               due AS (DELETE FROM history_due WHERE order_id = ANY($1::uuid[])),
                               intake AS (DELETE FROM intake_requests WHERE order_id = ANY($1::uuid[]))
                          DELETE FROM orders WHERE order_id = ANY($1::uuid[])""", order_ids)
