"""SQL for the inventory schema: load the rows a batch of commands touches (locked, always in the same order,
so concurrent batches cannot deadlock), and write back what the domain changed, one statement per table.
CHECK constraints make over-reservation or negative stock impossible whatever runs concurrently."""

from dataclasses import astuple
from uuid import UUID

import asyncpg

from shared.contracts.common import Line

from .domain import Inventory, LocationStock, Reservation, SkuStock


async def load(conn: asyncpg.Connection, order_ids: set[UUID], skus: set[str]) -> tuple[Inventory, Inventory]:
    """The inventory slice for these orders and SKUs (plus the SKUs of their reservations), and an untouched
    copy to tell what changed."""
    rows = await conn.fetch("SELECT * FROM reservations WHERE order_id = ANY($1) ORDER BY order_id FOR UPDATE",
                            sorted(order_ids))
    reservations = {r["order_id"]: Reservation(r["order_id"], r["status"], [Line(**line) for line in r["lines"]],
                                               r["location_id"]) for r in rows}
    skus = sorted(skus | {line.sku for r in reservations.values() for line in r.lines})
    sku_rows = await conn.fetch("SELECT * FROM sku_stock WHERE sku = ANY($1) ORDER BY sku FOR UPDATE", skus)
    location_rows = await conn.fetch(
        "SELECT * FROM location_stock WHERE sku = ANY($1) ORDER BY sku, location_id FOR UPDATE", skus)

    def build() -> Inventory:
        return Inventory(
            skus={r["sku"]: SkuStock(r["sku"], r["on_hand"], r["reserved"]) for r in sku_rows},
            locations={(r["sku"], r["location_id"]): LocationStock(r["sku"], r["location_id"], r["on_hand"],
                                                                   r["allocated"]) for r in location_rows},
            reservations={k: Reservation(v.order_id, v.status, list(v.lines), v.location_id)
                          for k, v in reservations.items()},
        )

    return build(), build()


async def flush(conn: asyncpg.Connection, inventory: Inventory, loaded: Inventory) -> None:
    skus = [s for key, s in inventory.skus.items() if astuple(s) != astuple(loaded.skus[key])]
    if skus:
        await conn.execute(
            "UPDATE sku_stock t SET on_hand = s.on_hand, reserved = s.reserved "
            "FROM unnest($1::text[], $2::int[], $3::int[]) AS s(sku, on_hand, reserved) WHERE t.sku = s.sku",
            [s.sku for s in skus], [s.on_hand for s in skus], [s.reserved for s in skus],
        )
    locations = [s for key, s in inventory.locations.items() if astuple(s) != astuple(loaded.locations[key])]
    if locations:
        await conn.execute(
            "UPDATE location_stock t SET on_hand = s.on_hand, allocated = s.allocated "
            "FROM unnest($1::text[], $2::text[], $3::int[], $4::int[]) AS s(sku, location_id, on_hand, allocated) "
            "WHERE t.sku = s.sku AND t.location_id = s.location_id",
            [s.sku for s in locations], [s.location_id for s in locations], [s.on_hand for s in locations],
            [s.allocated for s in locations],
        )
    reservations = [inventory.reservations[order_id] for order_id in inventory.changed_reservations]
    if reservations:
        await conn.execute(
            """INSERT INTO reservations (order_id, status, lines, location_id)
               SELECT order_id, status, lines, location_id FROM jsonb_to_recordset($1::jsonb)
                 AS r(order_id uuid, status text, lines jsonb, location_id text)
               ON CONFLICT (order_id) DO UPDATE SET status = EXCLUDED.status, location_id = EXCLUDED.location_id,
                 updated_at = now()""",
            [{"order_id": str(r.order_id), "status": r.status, "location_id": r.location_id,
              "lines": [line.model_dump() for line in r.lines]} for r in reservations],
        )


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
