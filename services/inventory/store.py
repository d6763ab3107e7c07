"""SQL for the inventory schema: load the rows a batch of commands touches (locked, always in the same order:
orders, then SKUs, then locations, so concurrent batches cannot deadlock), and write back what the domain
changed with its ledger entries, in one statement (rows created and safety stocks apart). CHECK constraints
make over-reservation or negative stock impossible whatever runs concurrently.

Orders are locked with transaction-scoped advisory locks rather than their reservation rows: an order without a
reservation yet has no row to lock, and inserting one at the end (after the SKU locks) could wait on a
transaction that holds that order and waits for our SKUs."""

from uuid import UUID

import asyncpg

from shared.contracts.common import Line, merge_lines
from shared.contracts.inventory import Atp

from .domain import Inventory, LedgerEntry, LocationStock, Reservation, SkuStock


async def load(conn: asyncpg.Connection, order_ids: set[UUID], skus: set[str],
               locations: set[str] = frozenset()) -> tuple[Inventory, Inventory]:
    """The inventory slice for these orders, SKUs and locations (plus the SKUs of the reservations), and an
    untouched copy to tell what changed."""
    await lock_orders(conn, order_ids)
    rows = await conn.fetch("SELECT * FROM reservations WHERE order_id = ANY($1)", list(order_ids))
    reservations = {r["order_id"]: _reservation(r) for r in rows}
    skus = sorted(skus | {line.sku for r in reservations.values() for line in r.lines})
    sku_rows = await conn.fetch("SELECT * FROM sku_stock WHERE sku = ANY($1) ORDER BY sku FOR UPDATE", skus)
    location_rows = await conn.fetch(
        "SELECT * FROM location_stock WHERE sku = ANY($1) ORDER BY sku, location_id FOR UPDATE", skus)
    locations = sorted(set(locations) | {r["location_id"] for r in location_rows})
    location_safety, sku_safety, expected = await _safety_stocks_and_receipts(conn, skus, locations)

    def build() -> Inventory:
        inventory = Inventory(
            skus={r["sku"]: SkuStock(r["sku"], r["on_hand"], r["reserved"], r["backordered"]) for r in sku_rows},
            locations={},
            reservations={k: v.copy() for k, v in reservations.items()},
            location_safety=dict(location_safety), sku_safety=dict(sku_safety),
            expected={sku: list(dates) for sku, dates in expected.items()},
        )
        inventory.locations = {
            (r["sku"], r["location_id"]): LocationStock(r["sku"], r["location_id"], r["on_hand"], r["allocated"],
                                                        inventory.safety_stock(r["sku"], r["location_id"]))
            for r in location_rows}
        return inventory

    return build(), build()


async def _safety_stocks_and_receipts(conn: asyncpg.Connection, skus: list[str],
                                      locations: list[str]) -> tuple[dict, dict, dict]:
    """Safety stocks and announced receipts for these SKUs and locations, in one statement. Read after the locks
    (never in the statement that takes them), so that a change committed while the batch waited for them is seen."""
    location_safety, sku_safety, receipts = await conn.fetchrow(
        """SELECT (SELECT array_agg((location_id, quantity)) FROM location_safety_stock WHERE location_id = ANY($2)),
                  (SELECT array_agg((sku, location_id, quantity)) FROM sku_safety_stock
                    WHERE sku = ANY($1) OR location_id = ANY($2)),
                  (SELECT array_agg((sku, expected_on, quantity) ORDER BY sku, expected_on) FROM expected_receipts
                    WHERE sku = ANY($1) AND NOT received)""", skus, locations)
    expected: dict[str, list[tuple]] = {}
    for sku, expected_on, quantity in receipts or ():
        expected.setdefault(sku, []).append((expected_on, quantity))
    return (dict(location_safety or ()), {(sku, location): quantity for sku, location, quantity in sku_safety or ()},
            expected)


def _reservation(row: asyncpg.Record) -> Reservation:
    """Stored lines name the location they are pinned (or committed) at; held ones name none."""
    pins: dict[str, list[Line]] = {}
    for line in row["lines"]:
        if line.get("location_id"):
            pins.setdefault(line["location_id"], []).append(Line(sku=line["sku"], quantity=line["quantity"]))
    committed: dict[str, list[Line]] = {}
    for line in row["committed_lines"]:
        committed.setdefault(line["location_id"], []).append(Line(sku=line["sku"], quantity=line["quantity"]))
    lines = merge_lines([Line(sku=line["sku"], quantity=line["quantity"]) for line in row["lines"]])
    return Reservation(row["order_id"], row["status"], lines, pins, row["correlation_id"], committed)


def _stored_lines(reservation: Reservation) -> list[dict]:
    pinned = [{**line.model_dump(), "location_id": location}
              for location, lines in sorted(reservation.pins.items()) for line in lines]
    return pinned + [line.model_dump() for line in reservation.held]


def _stored_committed(reservation: Reservation) -> list[dict]:
    return [{**line.model_dump(), "location_id": location}
            for location, lines in sorted(reservation.committed.items()) for line in lines]


ORDER_LOCKS = 7301  # the advisory lock class of inventory's orders (two-key locks: apart from every one-key lock)


async def lock_orders(conn: asyncpg.Connection, order_ids: set[UUID]) -> None:
    """One advisory lock per order (its first 32 bits: a collision only makes two orders wait on each other),
    taken in ascending order."""
    keys = sorted({int.from_bytes(order_id.bytes[:4], "big", signed=True) for order_id in order_ids})
    if keys:
        await conn.execute("SELECT count(pg_advisory_xact_lock($1, key)) FROM unnest($2::int4[]) AS key",
                           ORDER_LOCKS, keys)


async def skus_at(conn: asyncpg.Connection, location_id: str) -> set[str]:
    return {r["sku"] for r in await conn.fetch("SELECT sku FROM location_stock WHERE location_id = $1", location_id)}


FLUSH = """
WITH skus AS (
    UPDATE sku_stock t SET on_hand = s.on_hand, reserved = s.reserved, backordered = s.backordered
    FROM unnest($1::text[], $2::int[], $3::int[], $4::int[]) AS s(sku, on_hand, reserved, backordered)
    WHERE t.sku = s.sku),
locations AS (
    UPDATE location_stock t SET on_hand = s.on_hand, allocated = s.allocated
    FROM unnest($5::text[], $6::text[], $7::int[], $8::int[]) AS s(sku, location_id, on_hand, allocated)
    WHERE t.sku = s.sku AND t.location_id = s.location_id),
reservations AS (
    INSERT INTO reservations (order_id, status, lines, committed_lines, location_id, correlation_id, backordered_at)
    SELECT order_id, status, lines, committed_lines, location_id, correlation_id,
           CASE WHEN status = 'backordered' THEN clock_timestamp() END
    FROM jsonb_to_recordset($9::jsonb) AS r(order_id uuid, status text, lines jsonb, committed_lines jsonb,
                                            location_id text, correlation_id text)
    ON CONFLICT (order_id) DO UPDATE SET status = EXCLUDED.status, location_id = EXCLUDED.location_id,
      lines = EXCLUDED.lines, committed_lines = EXCLUDED.committed_lines, updated_at = now()),
ledger AS (
    INSERT INTO stock_ledger (sku, location_id, kind, on_hand, reserved, allocated, cause, order_id, document_id)
    SELECT * FROM jsonb_to_recordset($10::jsonb) AS e(sku text, location_id text, kind text, on_hand int,
      reserved int, allocated int, cause text, order_id uuid, document_id text))
SELECT 1"""


async def flush(conn: asyncpg.Connection, inventory: Inventory, loaded: Inventory) -> None:
    """What the batch changed: the counters of the rows it loaded (and locked), its reservations and ledger
    entries in one statement; rows it created (a first receipt) and safety stocks, seldom changed, apart."""
    changed_skus = [s for key, s in inventory.skus.items()
                    if key in loaded.skus and _sku_counters(s) != _sku_counters(loaded.skus[key])]
    changed_locations = [s for key, s in inventory.locations.items()
                         if key in loaded.locations and _counters(s) != _counters(loaded.locations[key])]
    reservations = [inventory.reservations[order_id] for order_id in inventory.changed_reservations]
    if changed_skus or changed_locations or reservations or inventory.ledger:
        await conn.execute(FLUSH, *_sku_columns(changed_skus), *_columns(changed_locations),
                           [_stored_reservation(r) for r in reservations],
                           [_ledger_entry(e) for e in inventory.ledger])
    await _insert_new_stock(conn, inventory, loaded)
    await _flush_safety(conn, inventory, loaded)
    inventory.ledger, inventory.changed_reservations = [], set()


def _sku_counters(s: SkuStock) -> tuple[int, int, int]:
    return s.on_hand, s.reserved, s.backordered


def _sku_columns(rows: list[SkuStock]) -> tuple[list, ...]:
    return ([s.sku for s in rows], [s.on_hand for s in rows], [s.reserved for s in rows],
            [s.backordered for s in rows])


def _counters(stock: LocationStock) -> tuple[int, int]:
    return stock.on_hand, stock.allocated


def _columns(rows: list[LocationStock]) -> tuple[list, ...]:
    return [s.sku for s in rows], [s.location_id for s in rows], [s.on_hand for s in rows], [s.allocated for s in rows]


async def _insert_new_stock(conn: asyncpg.Connection, inventory: Inventory, loaded: Inventory) -> None:
    """Rows the batch created (a first receipt), added to if another transaction created them meanwhile."""
    new_skus = [s for key, s in inventory.skus.items() if key not in loaded.skus]
    new_locations = [s for key, s in inventory.locations.items() if key not in loaded.locations]
    if new_skus:
        await conn.execute(
            "INSERT INTO sku_stock (sku, on_hand, reserved, backordered) "
            "SELECT * FROM unnest($1::text[], $2::int[], $3::int[], $4::int[]) "
            "ON CONFLICT (sku) DO UPDATE SET on_hand = sku_stock.on_hand + EXCLUDED.on_hand, "
            "reserved = sku_stock.reserved + EXCLUDED.reserved, "
            "backordered = sku_stock.backordered + EXCLUDED.backordered", *_sku_columns(new_skus))
    if new_locations:
        await conn.execute(
            "INSERT INTO location_stock (sku, location_id, on_hand, allocated) "
            "SELECT * FROM unnest($1::text[], $2::text[], $3::int[], $4::int[]) "
            "ON CONFLICT (sku, location_id) DO UPDATE SET on_hand = location_stock.on_hand + EXCLUDED.on_hand, "
            "allocated = location_stock.allocated + EXCLUDED.allocated", *_columns(new_locations))


async def _flush_safety(conn: asyncpg.Connection, inventory: Inventory, loaded: Inventory) -> None:
    for location_id, quantity in inventory.location_safety.items():
        if loaded.location_safety.get(location_id) != quantity:
            await conn.execute(
                "INSERT INTO location_safety_stock (location_id, quantity) VALUES ($1, $2) "
                "ON CONFLICT (location_id) DO UPDATE SET quantity = EXCLUDED.quantity", location_id, quantity)
    for (sku, location_id), quantity in inventory.sku_safety.items():
        if loaded.sku_safety.get((sku, location_id)) == quantity:
            continue
        if quantity is None:
            await conn.execute("DELETE FROM sku_safety_stock WHERE sku = $1 AND location_id = $2", sku, location_id)
        else:
            await conn.execute(
                "INSERT INTO sku_safety_stock (sku, location_id, quantity) VALUES ($1, $2, $3) "
                "ON CONFLICT (sku, location_id) DO UPDATE SET quantity = EXCLUDED.quantity", sku, location_id,
                quantity)


def _stored_reservation(r: Reservation) -> dict:
    return {"order_id": str(r.order_id), "status": r.status, "location_id": min(r.pins, default=None),
            "correlation_id": r.correlation_id, "lines": _stored_lines(r), "committed_lines": _stored_committed(r)}


def _ledger_entry(e: LedgerEntry) -> dict:
    return {"sku": e.sku, "location_id": e.location_id, "kind": e.kind, "on_hand": e.on_hand, "reserved": e.reserved,
            "allocated": e.allocated, "cause": e.cause, "order_id": str(e.order_id) if e.order_id else None,
            "document_id": e.document_id}


async def claim_receipt(conn: asyncpg.Connection, receipt_id: str, sku: str, location_id: str, quantity: int) -> bool:
    """Record the receipt; False if it was already booked."""
    return bool(await conn.fetchval(
        "INSERT INTO receipts (receipt_id, sku, location_id, quantity) VALUES ($1, $2, $3, $4) "
        "ON CONFLICT DO NOTHING RETURNING 1", receipt_id, sku, location_id, quantity))


async def extension_answer(conn: asyncpg.Connection, order_id: UUID, edit_id: str) -> dict | None:
    return await conn.fetchval("SELECT answer FROM reservation_extensions WHERE order_id = $1 AND edit_id = $2",
                               order_id, edit_id)


async def record_extension(conn: asyncpg.Connection, order_id: UUID, edit_id: str, answer: dict) -> None:
    await conn.execute("INSERT INTO reservation_extensions (order_id, edit_id, answer) VALUES ($1, $2, $3)",
                       order_id, edit_id, answer)


async def document_booked(conn: asyncpg.Connection, document_id: str) -> bool:
    return bool(await conn.fetchval("SELECT 1 FROM stock_documents WHERE document_id = $1", document_id))


async def book_document(conn: asyncpg.Connection, document_id: str, kind: str, sku: str, location_id: str,
                        change: int) -> None:
    await conn.execute("INSERT INTO stock_documents (document_id, kind, sku, location_id, change) "
                       "VALUES ($1, $2, $3, $4, $5)", document_id, kind, sku, location_id, change)


async def due_reservations(conn: asyncpg.Connection, ttl_seconds: float, limit: int,
                           among: list[UUID] | None = None) -> dict[UUID, str | None]:
    """Reservations held longer than the TTL (among these orders, if given), with their order's correlation id."""
    rows = await conn.fetch(
        "SELECT order_id, correlation_id FROM reservations WHERE status = 'held' "
        "AND updated_at < now() - make_interval(secs => $1) AND ($3::uuid[] IS NULL OR order_id = ANY($3)) "
        "ORDER BY updated_at LIMIT $2", ttl_seconds, limit, among)
    return {r["order_id"]: r["correlation_id"] for r in rows}


async def read_atp(conn: asyncpg.Connection, sku: str) -> Atp:
    """One SKU's ATP, read in one snapshot without locking anything."""
    async with conn.transaction(isolation="repeatable_read", readonly=True):
        sku_rows = await conn.fetch("SELECT * FROM sku_stock WHERE sku = $1", sku)
        location_rows = await conn.fetch("SELECT * FROM location_stock WHERE sku = $1", sku)
        location_safety = dict(await conn.fetch(
            "SELECT location_id, quantity FROM location_safety_stock WHERE location_id = ANY($1)",
            [r["location_id"] for r in location_rows]))
        sku_safety = {(sku, r["location_id"]): r["quantity"] for r in await conn.fetch(
            "SELECT location_id, quantity FROM sku_safety_stock WHERE sku = $1", sku)}
    inventory = Inventory(skus={r["sku"]: SkuStock(r["sku"], r["on_hand"], r["reserved"]) for r in sku_rows},
                          locations={}, reservations={}, location_safety=location_safety, sku_safety=sku_safety)
    inventory.locations = {(sku, r["location_id"]): LocationStock(sku, r["location_id"], r["on_hand"], r["allocated"],
                                                                  inventory.safety_stock(sku, r["location_id"]))
                           for r in location_rows}
    return inventory.atp(sku)


async def expect_receipt(conn: asyncpg.Connection, receipt_id: str, sku: str, location_id: str, quantity: int,
                         expected_on) -> bool:
    """Record an announced receipt; False if it was announced before."""
    return bool(await conn.fetchval(
        "INSERT INTO expected_receipts (receipt_id, sku, location_id, quantity, expected_on) "
        "VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING RETURNING 1", receipt_id, sku, location_id, quantity,
        expected_on))


async def mark_received(conn: asyncpg.Connection, receipt_id: str) -> None:
    await conn.execute("UPDATE expected_receipts SET received = true WHERE receipt_id = $1", receipt_id)


async def waiting_orders(conn: asyncpg.Connection, limit: int) -> list[UUID]:
    """Backordered orders in arrival order, if arrivals may now cover some (a SKU they wait for has stock that
    nothing holds)."""
    if not await conn.fetchval("SELECT EXISTS (SELECT 1 FROM sku_stock WHERE backordered > 0 "
                               "AND on_hand > reserved)"):
        return []
    return [r["order_id"] for r in await conn.fetch(
        "SELECT order_id FROM reservations WHERE status = 'backordered' ORDER BY backordered_at, order_id LIMIT $1",
        limit)]


async def forget_orders(conn: asyncpg.Connection, order_ids: list[UUID]) -> list[UUID]:
    """Orders past their retention: their reservations that hold nothing any more (what they shipped added to
    `purged_shipments`), and their edits' answers. The stock ledger is the stock's account and stays. Returns the
    orders whose reservation still holds units (kept: releasing them is not this path's business)."""
    rows = await conn.fetch(
        """WITH gone AS (DELETE FROM reservations
                         WHERE order_id = ANY($1::uuid[])
                           AND (status IN ('released', 'expired') OR status = 'committed' AND lines = '[]')
                         RETURNING order_id, committed_lines),
                shipped AS (INSERT INTO purged_shipments (sku, location_id, quantity)
                            SELECT l->>'sku', l->>'location_id', sum((l->>'quantity')::int)
                            FROM gone, jsonb_array_elements(gone.committed_lines) l GROUP BY 1, 2
                            ON CONFLICT (sku, location_id)
                            DO UPDATE SET quantity = purged_shipments.quantity + excluded.quantity),
                extensions AS (DELETE FROM reservation_extensions WHERE order_id = ANY($1::uuid[]))
           SELECT order_id FROM reservations WHERE order_id = ANY($1::uuid[])
             AND order_id NOT IN (SELECT order_id FROM gone)""", order_ids)
    return [row["order_id"] for row in rows]
