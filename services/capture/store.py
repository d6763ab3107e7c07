"""SQL for the capture schema: orders, their sagas (with deadlines) and timelines."""

from collections.abc import Sequence
from dataclasses import dataclass
from typing import NamedTuple
from datetime import UTC, datetime
from decimal import Decimal
from uuid import UUID

import asyncpg
from pydantic import TypeAdapter

from shared.contracts.common import Assignment, Delivery, Line, ReasonCode
from shared.contracts.inventory import LocationAvailability
from shared.contracts.orders import Hold, PlaceOrder, PricedLine

from shared.contracts.fulfillment import PartAmendment

from .saga import ORDER_STATUS, WAITING, Edit, Part, Saga, hold_deadline, order_value

_delivery = TypeAdapter(Delivery)


async def insert_orders(conn: asyncpg.Connection, orders: list[tuple[UUID, PlaceOrder]]) -> set[UUID]:
    """Insert the orders that are new; returns their ids (a channel's retry of a known order is not new, nor is a
    purged order)."""
    rows = await conn.fetch(
        """INSERT INTO orders (order_id, channel, channel_order_id, status, placed, customer_id)
           SELECT o.order_id, o.channel, o.channel_order_id, 'accepted', o.placed, o.customer_id
           FROM jsonb_to_recordset($1::jsonb) AS o(order_id uuid, channel text, channel_order_id text, placed jsonb,
                                                  customer_id text)
           WHERE NOT EXISTS (SELECT FROM purged_orders p WHERE p.order_id = o.order_id)
           ON CONFLICT DO NOTHING RETURNING order_id""",
        [{"order_id": str(order_id), "channel": cmd.channel, "channel_order_id": cmd.channel_order_id,
          "placed": cmd.model_dump(mode="json"), "customer_id": cmd.customer.customer_id}
         for order_id, cmd in orders],
    )
    return {r["order_id"] for r in rows}


async def purged_orders(conn: asyncpg.Connection, order_ids: list[UUID]) -> dict[UUID, datetime]:
    """Which of these orders were purged, and when."""
    rows = await conn.fetch("SELECT order_id, purged_at FROM purged_orders WHERE order_id = ANY($1)", order_ids)
    return {r["order_id"]: r["purged_at"] for r in rows}


async def known_orders(conn: asyncpg.Connection, order_ids: list[UUID]) -> set[UUID]:
    rows = await conn.fetch("SELECT order_id FROM orders WHERE order_id = ANY($1)", order_ids)
    return {r["order_id"] for r in rows}


_SAGA_SELECT = """SELECT s.*, o.placed, o.channel, o.channel_order_id
                   FROM order_sagas s JOIN orders o USING (order_id)"""


async def lock_sagas(conn: asyncpg.Connection, order_ids: list[UUID]) -> None:
    await conn.execute("SELECT FROM order_sagas WHERE order_id = ANY($1) ORDER BY order_id FOR UPDATE", order_ids)


async def load_sagas(conn: asyncpg.Connection, order_ids: list[UUID]) -> dict[UUID, tuple[Saga, str]]:
    """The sagas, locked for this transaction (in id order, so concurrent batches cannot deadlock), with their
    correlation ids."""
    rows = await conn.fetch(f"{_SAGA_SELECT} WHERE s.order_id = ANY($1) ORDER BY s.order_id FOR UPDATE OF s",
                            sorted(order_ids))
    return {r["order_id"]: (_saga(r), r["correlation_id"]) for r in rows}


async def due_sagas(conn: asyncpg.Connection, limit: int) -> list[tuple[Saga, str, dict[str, str]]]:
    """Sagas whose step deadline has passed, locked (other instances skip them), with their correlation ids and
    the trace context (W3C headers) of the step that set the deadline."""
    rows = await conn.fetch(
        f"{_SAGA_SELECT} WHERE s.deadline_at <= now() ORDER BY s.deadline_at LIMIT $1 FOR UPDATE OF s SKIP LOCKED",
        limit,
    )
    return [(_saga(r), r["correlation_id"], r["trace_context"]) for r in rows]


def _placed_lines(row: asyncpg.Record) -> list[dict]:
    """The accepted order's lines as stored (validated when the order came in; read back on every reply, so not
    validated again)."""
    return [{**line, "unit_price": Decimal(str(line["unit_price"]))} for line in row["placed"]["lines"]]


def _backorder_skus(placed: dict) -> tuple[str, ...]:
    """As PlaceOrder.backorder_skus, from the stored payload."""
    return tuple(sorted({line["sku"] for line in placed["lines"]
                         if placed.get("allow_backorder") or line.get("allow_backorder")}))


def _saga(row: asyncpg.Record) -> Saga:
    return Saga(
        order_id=row["order_id"],
        state=row["state"],
        lines=tuple(Line(sku=line["sku"], quantity=line["quantity"]) for line in row["placed"]["lines"]),
        delivery=_delivery.validate_python(row["placed"]["delivery"]),
        channel=row["channel"],
        channel_order_id=row["channel_order_id"],
        parts=tuple(Part(p["location_id"], tuple(Line(**line) for line in p["lines"]), p["status"], p.get("round", 0),
                         p.get("location_kind")) for p in row["parts"]),
        plan=tuple(Assignment(**a) for a in row["plan"]),
        availability=tuple(LocationAvailability(**a) for a in row["availability"]),
        excluded_locations=tuple(row["excluded_locations"]),
        compensations=tuple(row["compensations"]),
        cancel_reason=ReasonCode(**row["cancel_reason"]) if row["cancel_reason"] else None,
        cancel_stage=row["cancel_stage"],
        attempts=row["attempts"],
        order_value=order_value(PricedLine.model_construct(**line) for line in _placed_lines(row)),
        backorder_skus=_backorder_skus(row["placed"]),
        placed=row["placed"],
        holds=tuple(Hold.model_validate(h) for h in row["holds"]),
        captures=tuple((c[0], Decimal(str(c[1]))) for c in row["captures"]),
        voided=row["voided"],
        shipped=tuple(Line(**line) for line in row["shipped"]),
        handed_over_at=row["handed_over_at"],
        unplaced=tuple(Line(**line) for line in row["unplaced"]),
        edit=_edit(row["edit"]),
    )


def _edit(stored: dict | None) -> Edit | None:
    if stored is None:
        return None
    return Edit(stored["edit_id"], stored["placed"], stored["previous_state"],
                added=tuple(Line(**line) for line in stored["added"]),
                removed=tuple(Line(**line) for line in stored["removed"]), rerouted=stored["rerouted"],
                amendments=tuple(PartAmendment.model_validate(a) for a in stored["amendments"]))


def _stored_edit(edit: Edit | None) -> dict | None:
    if edit is None:
        return None
    return {"edit_id": edit.edit_id, "placed": edit.placed, "previous_state": edit.previous_state,
            "added": [line.model_dump() for line in edit.added],
            "removed": [line.model_dump() for line in edit.removed],
            "rerouted": edit.rerouted, "amendments": [a.model_dump(mode="json") for a in edit.amendments]}


async def save_sagas(conn: asyncpg.Connection, sagas: list[tuple[Saga, str, dict[str, str]]],
                     step_timeout: float, timeline: list["TimelineEntry"] = ()) -> dict[UUID, tuple[str, float]]:
    """Upsert the saga rows (with correlation id and trace context) and the status of the orders whose step
    changed what the channel sees, and add the timeline's entries, in one statement; returns each stored saga's
    state before this and the seconds since it entered it (read in the statement's snapshot, before the
    upsert). The orders and sagas are looked up by their ids, an index's work: joined to the input alone, which the
    planner takes for a hundred rows, they were read whole on every save. A saga still in the step it was in, whose
    command did not go out now, keeps its deadline: other messages (an edit refused while the order is busy) would
    otherwise put it off for ever."""
    rows = [{
        "order_id": str(saga.order_id), "state": saga.state,
        "parts": [{"location_id": p.location_id, "lines": [line.model_dump() for line in p.lines], "status": p.status,
                   "round": p.round, "location_kind": p.location_kind} for p in saga.parts],
        "plan": [a.model_dump() for a in saga.plan],
        "availability": [a.model_dump() for a in saga.availability],
        "excluded_locations": list(saga.excluded_locations), "compensations": list(saga.compensations),
        "cancel_reason": saga.cancel_reason.model_dump() if saga.cancel_reason else None,
        "cancel_stage": saga.cancel_stage, "attempts": saga.attempts, "correlation_id": correlation_id,
        "trace_context": trace_context,
        "holds": [h.model_dump(mode="json") for h in saga.holds],
        "captures": [[capture_id, str(amount)] for capture_id, amount in saga.captures], "voided": saga.voided,
        "shipped": [line.model_dump() for line in saga.shipped],
        "handed_over_at": saga.handed_over_at.isoformat() if saga.handed_over_at else None,
        "unplaced": [line.model_dump() for line in saga.unplaced], "edit": _stored_edit(saga.edit),
        "placed": saga.placed if saga.placed_changed else None,
        "timeout": _timeout(saga, step_timeout),
        "keeps_deadline": saga.state in WAITING and not saga.sent,
        "status": ORDER_STATUS.get(saga.state),
    } for saga, correlation_id, trace_context in sagas]
    rows_before = await conn.fetch(
        """WITH input AS (
             SELECT * FROM jsonb_to_recordset($1::jsonb) AS s(
               order_id uuid, state text, parts jsonb, plan jsonb, holds jsonb, captures jsonb, voided boolean,
               shipped jsonb, handed_over_at timestamptz, unplaced jsonb, edit jsonb, placed jsonb,
               availability jsonb,
               excluded_locations text[], compensations text[], cancel_reason jsonb, cancel_stage text,
               attempts int, correlation_id text, trace_context jsonb, timeout float8, keeps_deadline boolean,
               status text)
           ), timed AS (
             SELECT i.*, coalesce(CASE WHEN i.keeps_deadline THEN (
                                     SELECT s.deadline_at FROM order_sagas s
                                     WHERE s.order_id = i.order_id AND s.state = i.state) END,
                                   now() + make_interval(secs => i.timeout)) AS deadline_at
             FROM input i
           ), saved AS (
             INSERT INTO order_sagas (order_id, state, parts, plan, holds, captures, voided, shipped, handed_over_at,
                                      unplaced, edit, availability,
                                      excluded_locations, cancel_reason, compensations, cancel_stage, attempts,
                                      deadline_at, correlation_id, trace_context)
             SELECT order_id, state, parts, plan, holds, captures, voided, shipped, handed_over_at, unplaced, edit,
                    availability,
                    excluded_locations,
                    cancel_reason, compensations, cancel_stage, attempts, deadline_at, correlation_id, trace_context
             FROM timed
             ON CONFLICT (order_id) DO UPDATE SET state = EXCLUDED.state, parts = EXCLUDED.parts,
               plan = EXCLUDED.plan, holds = EXCLUDED.holds, captures = EXCLUDED.captures,
               voided = EXCLUDED.voided, shipped = EXCLUDED.shipped, handed_over_at = EXCLUDED.handed_over_at,
               unplaced = EXCLUDED.unplaced, edit = EXCLUDED.edit,
               availability = EXCLUDED.availability,
               excluded_locations = EXCLUDED.excluded_locations, cancel_reason = EXCLUDED.cancel_reason,
               compensations = EXCLUDED.compensations, cancel_stage = EXCLUDED.cancel_stage,
               attempts = EXCLUDED.attempts, deadline_at = EXCLUDED.deadline_at,
               trace_context = EXCLUDED.trace_context, updated_at = now()
           ), statuses AS (
             UPDATE orders o SET status = coalesce(i.status, o.status), placed = coalesce(i.placed, o.placed),
                                 updated_at = now()
             FROM input i WHERE o.order_id = i.order_id AND o.order_id = ANY($7::uuid[])
               AND (i.status IS NOT NULL AND o.status <> i.status OR i.placed IS NOT NULL)
           ), entries AS (
             INSERT INTO order_timeline (order_id, direction, message_type, message_id, saga_state)
             SELECT * FROM unnest($2::uuid[], $3::text[], $4::text[], $5::uuid[], $6::text[])
           )
           SELECT s.order_id, s.state, extract(epoch FROM now() - s.state_since)::float8 AS seconds
           FROM order_sagas s WHERE s.order_id = ANY($7::uuid[])""",
        rows, *_timeline_columns(timeline), [saga.order_id for saga, _, _ in sagas],
    )
    return {r["order_id"]: (r["state"], r["seconds"]) for r in rows_before}


async def known_customers(conn: asyncpg.Connection, channel: str, customer_ids: list[str]) -> set[str]:
    """The channel's customers who have ordered before."""
    rows = await conn.fetch("SELECT DISTINCT customer_id FROM orders WHERE channel = $1 AND customer_id = ANY($2)",
                            channel, customer_ids)
    return {r["customer_id"] for r in rows}


def _timeout(saga: Saga, step_timeout: float) -> float | None:
    """Seconds to the saga's next deadline: its step's (doubling per send), or a held order's first hold
    expiry."""
    if saga.state in WAITING:
        return step_timeout * 2 ** max(saga.attempts - 1, 0)
    lapse = hold_deadline(saga) if saga.state == "held" else None
    return max((lapse - datetime.now(UTC)).total_seconds(), 0.0) if lapse else None


async def returns_of(conn: asyncpg.Connection, order_id: UUID) -> dict[str, asyncpg.Record]:
    """The order's returns by id (the caller holds the order's saga row, so they cannot change meanwhile)."""
    rows = await conn.fetch("SELECT * FROM returns WHERE order_id = $1", order_id)
    return {r["return_id"]: r for r in rows}


async def insert_return(conn: asyncpg.Connection, order_id: UUID, return_id: str, lines: list, return_to: str,
                        exchange_order_id: UUID | None) -> None:
    await conn.execute("INSERT INTO returns (order_id, return_id, status, lines, return_to, exchange_order_id) "
                       "VALUES ($1, $2, 'approved', $3, $4, $5)", order_id, return_id,
                       [line.model_dump() for line in lines], return_to, exchange_order_id)


async def placed_order(conn: asyncpg.Connection, order_id: UUID) -> PlaceOrder:
    return PlaceOrder.model_validate(await conn.fetchval("SELECT placed FROM orders WHERE order_id = $1", order_id))


async def record_receipt(conn: asyncpg.Connection, order_id: UUID, return_id: str, received: list, refund: dict,
                         received_at: datetime, price_difference: Decimal | None) -> None:
    await conn.execute("UPDATE returns SET status = 'received', received = $3, refund = $4, received_at = $5, "
                       "price_difference = $6 WHERE order_id = $1 AND return_id = $2", order_id, return_id,
                       [line.model_dump() for line in received], refund, received_at, price_difference)


async def record_refund(conn: asyncpg.Connection, order_id: UUID, return_id: str, amount: Decimal) -> None:
    await conn.execute("UPDATE returns SET refunded = $3 WHERE order_id = $1 AND return_id = $2",
                       order_id, return_id, amount)


async def edit_of(conn: asyncpg.Connection, order_id: UUID, edit_id: str) -> asyncpg.Record | None:
    return await conn.fetchrow("SELECT request, answer FROM order_edits WHERE order_id = $1 AND edit_id = $2",
                               order_id, edit_id)


async def insert_edit(conn: asyncpg.Connection, order_id: UUID, edit_id: str, request: dict) -> None:
    await conn.execute("INSERT INTO order_edits (order_id, edit_id, request) VALUES ($1, $2, $3)",
                       order_id, edit_id, request)


async def record_edit_answers(conn: asyncpg.Connection, answers: list[tuple[UUID, str, dict]]) -> None:
    """Answers of edits (an edit refused before it was recorded, e.g. ORDER_BUSY, has no row: nothing to do)."""
    if answers:
        await conn.executemany("UPDATE order_edits SET answer = $3 WHERE order_id = $1 AND edit_id = $2", answers)


async def find_order_id(conn: asyncpg.Connection, channel: str, channel_order_id: str):
    return await conn.fetchval("SELECT order_id FROM orders WHERE channel = $1 AND channel_order_id = $2",
                               channel, channel_order_id)


@dataclass(frozen=True)
class TimelineEntry:
    order_id: UUID
    direction: str  # in, out or note
    message_type: str
    message_id: UUID | None
    saga_state: str | None


async def record(conn: asyncpg.Connection, entries: list[TimelineEntry]) -> None:
    """Timeline entries of a batch that saved no saga (with sagas, save_sagas writes them)."""
    if not entries:
        return
    await conn.execute(
        """INSERT INTO order_timeline (order_id, direction, message_type, message_id, saga_state)
           SELECT * FROM unnest($1::uuid[], $2::text[], $3::text[], $4::uuid[], $5::text[])""",
        *_timeline_columns(entries),
    )


def _timeline_columns(entries: Sequence[TimelineEntry]) -> tuple[list, ...]:
    return ([e.order_id for e in entries], [e.direction for e in entries], [e.message_type for e in entries],
            [e.message_id for e in entries], [e.saga_state for e in entries])


async def postpone_deadlines(conn: asyncpg.Connection, order_ids: list[UUID], seconds: float) -> None:
    await conn.execute("UPDATE order_sagas SET deadline_at = now() + make_interval(secs => $2) "
                       "WHERE order_id = ANY($1)", order_ids, seconds)


async def past_deadline(conn: asyncpg.Connection) -> tuple[int, float]:
    """How many sagas are past their step deadline, and by how many seconds the most overdue is."""
    row = await conn.fetchrow("SELECT count(*) AS due, extract(epoch FROM now() - min(deadline_at))::float8 AS oldest "
                              "FROM order_sagas WHERE deadline_at <= now()")
    return row["due"], row["oldest"] or 0.0


CLOSED_STATES = ("delivered", "picked_up", "shipped", "cancelled")


class Purged(NamedTuple):
    order_id: UUID
    closed_as: str
    closed_at: datetime
    correlation_id: str


async def purge_closed(conn: asyncpg.Connection, retention_days: float, limit: int) -> list[Purged]:
    """Delete up to `limit` orders closed for longer than the retention — in a closed state, no return open, the
    last return's change older too — with everything capture keeps of them but their ids (`purged_orders`), oldest
    first; locked sagas are skipped (a reply under way). Parents and children go in one statement: the foreign
    keys are checked at its end."""
    rows = await conn.fetch(
        """WITH closed AS (
               SELECT s.order_id, s.state, s.correlation_id,
                      greatest(s.state_since, (SELECT max(greatest(r.approved_at, r.received_at))
                                               FROM returns r WHERE r.order_id = s.order_id)) AS closed_at
               FROM order_sagas s
               WHERE s.state = ANY($3::text[]) AND s.state_since < now() - make_interval(secs => $1)
                 AND NOT EXISTS (SELECT FROM returns r WHERE r.order_id = s.order_id
                                   AND (r.status = 'approved' OR r.refund IS NOT NULL AND r.refunded IS NULL
                                        OR greatest(r.approved_at, r.received_at)
                                           >= now() - make_interval(secs => $1)))
               ORDER BY s.state_since LIMIT $2
               FOR UPDATE OF s SKIP LOCKED),
           timeline AS (DELETE FROM order_timeline t USING closed c WHERE t.order_id = c.order_id),
           gone_returns AS (DELETE FROM returns r USING closed c WHERE r.order_id = c.order_id),
           edits AS (DELETE FROM order_edits e USING closed c WHERE e.order_id = c.order_id),
           sagas AS (DELETE FROM order_sagas s USING closed c WHERE s.order_id = c.order_id),
           orders AS (DELETE FROM orders o USING closed c WHERE o.order_id = c.order_id),
           tombstones AS (INSERT INTO purged_orders (order_id) SELECT order_id FROM closed ON CONFLICT DO NOTHING)
           SELECT order_id, state, closed_at, correlation_id FROM closed""",
        retention_days * 86400, limit, list(CLOSED_STATES))
    return [Purged(r["order_id"], r["state"], r["closed_at"], r["correlation_id"]) for r in rows]
