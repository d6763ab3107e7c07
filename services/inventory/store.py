"""SQL for the inventory schema. Every change is a conditional UPDATE, so stock can never go negative
or be over-reserved, whatever runs concurrently; the CHECK constraints back that up."""

from uuid import UUID

import asyncpg

from shared.contracts.common import Line
from shared.contracts.inventory import LocationAvailability, Shortage


class Rejected(Exception):
    """A business refusal inside a savepoint: the partial changes are rolled back by the caller."""

    def __init__(self, code: str, shortages: list[Shortage] | None = None):
        super().__init__(code)
        self.code = code
        self.shortages = shortages or []


async def reservation(conn: asyncpg.Connection, order_id: UUID) -> asyncpg.Record | None:
    return await conn.fetchrow("SELECT * FROM reservations WHERE order_id = $1 FOR UPDATE", order_id)


async def hold(conn: asyncpg.Connection, order_id: UUID, lines: list[Line]) -> None:
    """Hold every line against network stock, or raise Rejected having held nothing (savepoint)."""
    async with conn.transaction():
        for line in lines:
            held = await conn.fetchval(
                "UPDATE sku_stock SET reserved = reserved + $2 WHERE sku = $1 AND on_hand - reserved >= $2 RETURNING 1",
                line.sku, line.quantity,
            )
            if not held:
                raise Rejected(*await _shortage_reason(conn, lines))
        await conn.execute(
            "INSERT INTO reservations (order_id, status, lines) VALUES ($1, 'held', $2)",
            order_id, [line.model_dump() for line in lines],
        )


async def _shortage_reason(conn: asyncpg.Connection, lines: list[Line]) -> tuple[str, list[Shortage]]:
    rows = await conn.fetch("SELECT sku, on_hand - reserved AS available FROM sku_stock WHERE sku = ANY($1)",
                            [line.sku for line in lines])
    available = {r["sku"]: r["available"] for r in rows}
    shortages = [
        Shortage(sku=line.sku, requested=line.quantity, available=available.get(line.sku, 0))
        for line in lines if available.get(line.sku, 0) < line.quantity
    ]
    code = "UNKNOWN_SKU" if any(line.sku not in available for line in lines) else "OUT_OF_STOCK"
    return code, shortages


async def availability(conn: asyncpg.Connection, skus: list[str]) -> list[LocationAvailability]:
    rows = await conn.fetch(
        "SELECT location_id, sku, on_hand - allocated AS available FROM location_stock "
        "WHERE sku = ANY($1) AND on_hand > allocated ORDER BY location_id, sku",
        skus,
    )
    return [LocationAvailability(**dict(r)) for r in rows]


async def allocate(conn: asyncpg.Connection, order_id: UUID, location_id: str, lines: list[Line]) -> None:
    """Pin held units to one location, or raise Rejected having pinned nothing (savepoint)."""
    async with conn.transaction():
        for line in lines:
            pinned = await conn.fetchval(
                "UPDATE location_stock SET allocated = allocated + $3 "
                "WHERE sku = $1 AND location_id = $2 AND on_hand - allocated >= $3 RETURNING 1",
                line.sku, location_id, line.quantity,
            )
            if not pinned:
                raise Rejected("LOCATION_SHORT")
        await _set_status(conn, order_id, "allocated", location_id)


async def deallocate(conn: asyncpg.Connection, order_id: UUID, location_id: str, lines: list[Line]) -> None:
    """Un-pin the units from the location; the network hold stays."""
    for line in lines:
        await conn.execute(
            "UPDATE location_stock SET allocated = allocated - $3 WHERE sku = $1 AND location_id = $2",
            line.sku, location_id, line.quantity,
        )
    await _set_status(conn, order_id, "held", None)


async def release(conn: asyncpg.Connection, order_id: UUID, status: str, location_id: str | None,
                  lines: list[Line]) -> None:
    for line in lines:
        if status == "allocated":
            await conn.execute(
                "UPDATE location_stock SET allocated = allocated - $3 WHERE sku = $1 AND location_id = $2",
                line.sku, location_id, line.quantity,
            )
        await conn.execute("UPDATE sku_stock SET reserved = reserved - $2 WHERE sku = $1", line.sku, line.quantity)
    await _set_status(conn, order_id, "released", location_id)


async def tombstone(conn: asyncpg.Connection, order_id: UUID) -> None:
    """A release for an order with no reservation: remember it, so a ReserveStock that arrives later is refused."""
    await conn.execute(
        "INSERT INTO reservations (order_id, status, lines) VALUES ($1, 'released', '[]') ON CONFLICT DO NOTHING",
        order_id,
    )


async def commit(conn: asyncpg.Connection, order_id: UUID, location_id: str, lines: list[Line]) -> None:
    """The units left the building: take them out of on hand and out of the reservation."""
    for line in lines:
        await conn.execute(
            "UPDATE location_stock SET on_hand = on_hand - $3, allocated = allocated - $3 "
            "WHERE sku = $1 AND location_id = $2",
            line.sku, location_id, line.quantity,
        )
        await conn.execute(
            "UPDATE sku_stock SET on_hand = on_hand - $2, reserved = reserved - $2 WHERE sku = $1",
            line.sku, line.quantity,
        )
    await _set_status(conn, order_id, "committed", location_id)


async def receive(conn: asyncpg.Connection, receipt_id: str, sku: str, location_id: str, quantity: int) -> int | None:
    """Add received units; returns the location's new on hand, or None if this receipt was already booked."""
    booked = await conn.fetchval(
        "INSERT INTO receipts (receipt_id, sku, location_id, quantity) VALUES ($1, $2, $3, $4) "
        "ON CONFLICT DO NOTHING RETURNING 1",
        receipt_id, sku, location_id, quantity,
    )
    if not booked:
        return None
    await conn.execute(
        "INSERT INTO sku_stock (sku, on_hand) VALUES ($1, $2) "
        "ON CONFLICT (sku) DO UPDATE SET on_hand = sku_stock.on_hand + EXCLUDED.on_hand",
        sku, quantity,
    )
    return await conn.fetchval(
        "INSERT INTO location_stock (sku, location_id, on_hand) VALUES ($1, $2, $3) "
        "ON CONFLICT (sku, location_id) DO UPDATE SET on_hand = location_stock.on_hand + EXCLUDED.on_hand "
        "RETURNING on_hand",
        sku, location_id, quantity,
    )


async def _set_status(conn: asyncpg.Connection, order_id: UUID, status: str, location_id: str | None) -> None:
    await conn.execute(
        "UPDATE reservations SET status = $2, location_id = $3, updated_at = now() WHERE order_id = $1",
        order_id, status, location_id,
    )
