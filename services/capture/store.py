"""SQL for the capture schema: orders, their sagas (with deadlines) and timelines."""

from dataclasses import dataclass
from datetime import timedelta
from uuid import UUID

import asyncpg
from pydantic import TypeAdapter

from shared.contracts.common import Delivery, Line, ReasonCode
from shared.contracts.inventory import LocationAvailability
from shared.contracts.orders import PlaceOrder

from .saga import ORDER_STATUS, WAITING, Saga

_delivery = TypeAdapter(Delivery)


async def insert_order(conn: asyncpg.Connection, order_id, cmd: PlaceOrder) -> bool:
    """True if this is a new order; False if the channel already placed it."""
    return bool(await conn.fetchval(
        """INSERT INTO orders (order_id, channel, channel_order_id, status, placed)
           VALUES ($1, $2, $3, 'accepted', $4) ON CONFLICT DO NOTHING RETURNING 1""",
        order_id, cmd.channel, cmd.channel_order_id, cmd.model_dump(mode="json"),
    ))


_SAGA_SELECT = """SELECT s.*, o.placed, o.channel, o.channel_order_id FROM order_sagas s JOIN orders o USING (order_id)"""


async def load_saga(conn: asyncpg.Connection, order_id) -> tuple[Saga, str] | None:
    """The saga, locked for this transaction, and its correlation id."""
    row = await conn.fetchrow(f"{_SAGA_SELECT} WHERE s.order_id = $1 FOR UPDATE OF s", order_id)
    return (_saga(row), row["correlation_id"]) if row else None


async def due_sagas(conn: asyncpg.Connection, limit: int) -> list[tuple[Saga, str]]:
    """Sagas whose step deadline has passed, locked; other instances skip them."""
    rows = await conn.fetch(
        f"{_SAGA_SELECT} WHERE s.deadline_at <= now() ORDER BY s.deadline_at LIMIT $1 FOR UPDATE OF s SKIP LOCKED",
        limit,
    )
    return [(_saga(r), r["correlation_id"]) for r in rows]


def _saga(row: asyncpg.Record) -> Saga:
    return Saga(
        order_id=row["order_id"],
        state=row["state"],
        lines=tuple(Line(sku=line["sku"], quantity=line["quantity"]) for line in row["placed"]["lines"]),
        delivery=_delivery.validate_python(row["placed"]["delivery"]),
        channel=row["channel"],
        channel_order_id=row["channel_order_id"],
        location_id=row["location_id"],
        fulfillment_order_id=row["fulfillment_order_id"],
        availability=tuple(LocationAvailability(**a) for a in row["availability"]),
        excluded_locations=tuple(row["excluded_locations"]),
        compensations=tuple(row["compensations"]),
        cancel_reason=ReasonCode(**row["cancel_reason"]) if row["cancel_reason"] else None,
        cancel_stage=row["cancel_stage"],
        attempts=row["attempts"],
    )


async def save_saga(conn: asyncpg.Connection, saga: Saga, correlation_id: str, step_timeout: float) -> None:
    """Upsert the saga row and, when the step changes what the channel sees, the order's status: one statement."""
    deadline = timedelta(seconds=step_timeout * 2 ** max(saga.attempts - 1, 0)) if saga.state in WAITING else None
    await conn.execute(
        """WITH saga AS (
             INSERT INTO order_sagas (order_id, state, location_id, fulfillment_order_id, availability,
                                      excluded_locations, cancel_reason, compensations, cancel_stage, attempts,
                                      deadline_at, correlation_id)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, now() + $11::interval, $12)
             ON CONFLICT (order_id) DO UPDATE SET state = EXCLUDED.state, location_id = EXCLUDED.location_id,
               fulfillment_order_id = EXCLUDED.fulfillment_order_id, availability = EXCLUDED.availability,
               excluded_locations = EXCLUDED.excluded_locations, cancel_reason = EXCLUDED.cancel_reason,
               compensations = EXCLUDED.compensations, cancel_stage = EXCLUDED.cancel_stage,
               attempts = EXCLUDED.attempts, deadline_at = EXCLUDED.deadline_at, updated_at = now()
           )
           UPDATE orders SET status = $13, updated_at = now() WHERE order_id = $1 AND $13::text IS NOT NULL""",
        saga.order_id, saga.state, saga.location_id, saga.fulfillment_order_id,
        [a.model_dump() for a in saga.availability], list(saga.excluded_locations),
        saga.cancel_reason.model_dump() if saga.cancel_reason else None, list(saga.compensations),
        saga.cancel_stage, saga.attempts, deadline, correlation_id, ORDER_STATUS.get(saga.state),
    )


async def find_order_id(conn: asyncpg.Connection, channel: str, channel_order_id: str):
    return await conn.fetchval("SELECT order_id FROM orders WHERE channel = $1 AND channel_order_id = $2",
                               channel, channel_order_id)


@dataclass(frozen=True)
class TimelineEntry:
    direction: str  # in, out or note
    message_type: str
    message_id: UUID | None
    saga_state: str | None


async def record(conn: asyncpg.Connection, order_id: UUID, entries: list[TimelineEntry]) -> None:
    await conn.execute(
        """INSERT INTO order_timeline (order_id, direction, message_type, message_id, saga_state)
           SELECT $1, * FROM unnest($2::text[], $3::text[], $4::uuid[], $5::text[])""",
        order_id, [e.direction for e in entries], [e.message_type for e in entries],
        [e.message_id for e in entries], [e.saga_state for e in entries],
    )
