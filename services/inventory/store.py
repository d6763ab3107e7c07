"""SQL for the inventory schema. Rows are locked in SKU order, checked, then changed in one statement each;
CHECK constraints make over-reservation or negative stock impossible whatever runs concurrently."""

from uuid import UUID

import asyncpg

from shared.contracts.common import Line
from shared.contracts.inventory import LocationAvailability, Shortage


class Rejected(Exception):
    """A business refusal, raised before anything was changed."""

    def __init__(self, code: str, shortages: list[Shortage] | None = None):
        super().__init__(code)
        self.code = code
        self.shortages = shortages or []


async def reservation(conn: asyncpg.Connection, order_id: UUID) -> asyncpg.Record | None:
    return await conn.fetchrow("SELECT * FROM reservations WHERE order_id = $1 FOR UPDATE", order_id)


def _columns(lines: list[Line]) -> tuple[list[str], list[int]]:
    return [line.sku for line in lines], [line.quantity for line in lines]


async def hold(conn: asyncpg.Connection, order_id: UUID, lines: list[Line]) -> None:
    """Hold every line against network stock, or raise Rejected having held nothing. Lines come merged and
    sorted by SKU (domain.merge_lines), so concurrent orders lock rows in the same order."""
    skus, quantities = _columns(lines)
    rows = await conn.fetch(
        "SELECT sku, on_hand - reserved AS available FROM sku_stock WHERE sku = ANY($1) ORDER BY sku FOR UPDATE", skus
    )
    available = {r["sku"]: r["available"] for r in rows}
    shortages = [Shortage(sku=line.sku, requested=line.quantity, available=available.get(line.sku, 0))
                 for line in lines if available.get(line.sku, 0) < line.quantity]
    if shortages:
        raise Rejected("UNKNOWN_SKU" if any(line.sku not in available for line in lines) else "OUT_OF_STOCK",
                       shortages)
    await conn.execute(
        "UPDATE sku_stock s SET reserved = s.reserved + r.quantity "
        "FROM unnest($1::text[], $2::int[]) AS r(sku, quantity) WHERE s.sku = r.sku",
        skus, quantities,
    )
    await conn.execute("INSERT INTO reservations (order_id, status, lines) VALUES ($1, 'held', $2)",
                       order_id, [line.model_dump() for line in lines])


async def availability(conn: asyncpg.Connection, skus: list[str]) -> list[LocationAvailability]:
    rows = await conn.fetch(
        "SELECT location_id, sku, on_hand - allocated AS available FROM location_stock "
        "WHERE sku = ANY($1) AND on_hand > allocated ORDER BY location_id, sku",
        skus,
    )
    return [LocationAvailability(**dict(r)) for r in rows]


async def allocate(conn: asyncpg.Connection, order_id: UUID, location_id: str, lines: list[Line]) -> None:
    """Pin held units to one location, or raise Rejected having pinned nothing."""
    skus, quantities = _columns(lines)
    rows = await conn.fetch(
        "SELECT sku, on_hand - allocated AS available FROM location_stock "
        "WHERE location_id = $1 AND sku = ANY($2) ORDER BY sku FOR UPDATE",
        location_id, skus,
    )
    available = {r["sku"]: r["available"] for r in rows}
    if any(available.get(line.sku, 0) < line.quantity for line in lines):
        raise Rejected("LOCATION_SHORT")
    await _add_allocated(conn, location_id, skus, quantities)
    await _set_status(conn, order_id, "allocated", location_id)


async def deallocate(conn: asyncpg.Connection, order_id: UUID, location_id: str, lines: list[Line]) -> None:
    """Un-pin the units from the location; the network hold stays."""
    skus, quantities = _columns(lines)
    await _add_allocated(conn, location_id, skus, [-q for q in quantities])
    await _set_status(conn, order_id, "held", None)


async def release(conn: asyncpg.Connection, order_id: UUID, status: str, location_id: str | None,
                  lines: list[Line]) -> None:
    skus, quantities = _columns(lines)
    if status == "allocated":
        await _add_allocated(conn, location_id, skus, [-q for q in quantities])
    await conn.execute(
        "UPDATE sku_stock s SET reserved = s.reserved - r.quantity "
        "FROM unnest($1::text[], $2::int[]) AS r(sku, quantity) WHERE s.sku = r.sku",
        skus, quantities,
    )
    await _set_status(conn, order_id, "released", location_id)


async def tombstone(conn: asyncpg.Connection, order_id: UUID) -> None:
    """A release for an order with no reservation: remember it, so a ReserveStock that arrives later is refused."""
    await conn.execute(
        "INSERT INTO reservations (order_id, status, lines) VALUES ($1, 'released', '[]') ON CONFLICT DO NOTHING",
        order_id,
    )


async def commit(conn: asyncpg.Connection, order_id: UUID, location_id: str, lines: list[Line]) -> None:
    """The units left the building: take them out of on hand and out of the reservation."""
    skus, quantities = _columns(lines)
    await conn.execute(
        "UPDATE location_stock s SET on_hand = s.on_hand - r.quantity, allocated = s.allocated - r.quantity "
        "FROM unnest($2::text[], $3::int[]) AS r(sku, quantity) WHERE s.location_id = $1 AND s.sku = r.sku",
        location_id, skus, quantities,
    )
    await conn.execute(
        "UPDATE sku_stock s SET on_hand = s.on_hand - r.quantity, reserved = s.reserved - r.quantity "
        "FROM unnest($1::text[], $2::int[]) AS r(sku, quantity) WHERE s.sku = r.sku",
        skus, quantities,
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


async def _add_allocated(conn: asyncpg.Connection, location_id: str, skus: list[str], deltas: list[int]) -> None:
    await conn.execute(
        "UPDATE location_stock s SET allocated = s.allocated + r.delta "
        "FROM unnest($2::text[], $3::int[]) AS r(sku, delta) WHERE s.location_id = $1 AND s.sku = r.sku",
        location_id, skus, deltas,
    )


async def _set_status(conn: asyncpg.Connection, order_id: UUID, status: str, location_id: str | None) -> None:
    await conn.execute(
        "UPDATE reservations SET status = $2, location_id = $3, updated_at = now() WHERE order_id = $1",
        order_id, status, location_id,
    )
