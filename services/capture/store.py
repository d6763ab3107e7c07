"""SQL for the capture schema: orders, their sagas and timelines."""

import asyncpg
from pydantic import TypeAdapter

from shared.contracts.common import Delivery, Line, ReasonCode
from shared.contracts.inventory import LocationAvailability
from shared.contracts.orders import PlaceOrder

from .saga import ORDER_STATUS, Saga

_delivery = TypeAdapter(Delivery)


async def insert_order(conn: asyncpg.Connection, order_id, cmd: PlaceOrder) -> bool:
    """True if this is a new order; False if the channel already placed it."""
    return bool(await conn.fetchval(
        """INSERT INTO orders (order_id, channel, channel_order_id, status, placed)
           VALUES ($1, $2, $3, 'accepted', $4) ON CONFLICT DO NOTHING RETURNING 1""",
        order_id, cmd.channel, cmd.channel_order_id, cmd.model_dump(mode="json"),
    ))


async def load_saga(conn: asyncpg.Connection, order_id) -> Saga | None:
    row = await conn.fetchrow(
        """SELECT s.*, o.placed FROM order_sagas s JOIN orders o USING (order_id)
           WHERE s.order_id = $1 FOR UPDATE OF s""",
        order_id,
    )
    if row is None:
        return None
    return Saga(
        order_id=row["order_id"],
        state=row["state"],
        lines=tuple(Line(sku=line["sku"], quantity=line["quantity"]) for line in row["placed"]["lines"]),
        delivery=_delivery.validate_python(row["placed"]["delivery"]),
        location_id=row["location_id"],
        fulfillment_order_id=row["fulfillment_order_id"],
        availability=tuple(LocationAvailability(**a) for a in row["availability"]),
        excluded_locations=tuple(row["excluded_locations"]),
        cancel_reason=ReasonCode(**row["cancel_reason"]) if row["cancel_reason"] else None,
    )


async def save_saga(conn: asyncpg.Connection, saga: Saga) -> None:
    await conn.execute(
        """INSERT INTO order_sagas (order_id, state, location_id, fulfillment_order_id, availability,
                                    excluded_locations, cancel_reason)
           VALUES ($1, $2, $3, $4, $5, $6, $7)
           ON CONFLICT (order_id) DO UPDATE SET state = EXCLUDED.state, location_id = EXCLUDED.location_id,
             fulfillment_order_id = EXCLUDED.fulfillment_order_id, availability = EXCLUDED.availability,
             excluded_locations = EXCLUDED.excluded_locations, cancel_reason = EXCLUDED.cancel_reason,
             updated_at = now()""",
        saga.order_id, saga.state, saga.location_id, saga.fulfillment_order_id,
        [a.model_dump() for a in saga.availability], list(saga.excluded_locations),
        saga.cancel_reason.model_dump() if saga.cancel_reason else None,
    )
    if saga.state in ORDER_STATUS:
        await conn.execute("UPDATE orders SET status = $2, updated_at = now() WHERE order_id = $1",
                           saga.order_id, ORDER_STATUS[saga.state])


async def record(conn: asyncpg.Connection, order_id, direction: str, message_type: str, message_id,
                 saga_state: str | None) -> None:
    await conn.execute(
        """INSERT INTO order_timeline (order_id, direction, message_type, message_id, saga_state)
           VALUES ($1, $2, $3, $4, $5)""",
        order_id, direction, message_type, message_id, saga_state,
    )
