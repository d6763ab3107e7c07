"""Concurrent reservations on real Postgres never take more than is on hand."""

import asyncio
import uuid

import pytest

from services.inventory import store
from shared.contracts.common import Line
from shared.contracts.inventory import StockReserved, StockUnavailable

from ops.waiting import eventually

pytestmark = pytest.mark.integration


async def receive(pool, sku: str, location_id: str, quantity: int) -> None:
    """As the service books a receipt (`oms check` reads the receipts too)."""
    receipt_id = f"r-{sku}-{location_id}"
    async with pool.acquire() as conn, conn.transaction():
        inventory, loaded = await store.load(conn, set(), {sku}, {location_id})
        await store.claim_receipt(conn, receipt_id, sku, location_id, quantity)
        inventory.receive(receipt_id, sku, location_id, quantity)
        await store.flush(conn, inventory, loaded)


async def reserve(pool, lines: list[Line]):
    """What the inventory service does for one ReserveStock, in a transaction of its own."""
    order_id = uuid.uuid4()
    async with pool.acquire() as conn, conn.transaction():
        inventory, loaded = await store.load(conn, {order_id}, {line.sku for line in lines})
        answer = inventory.reserve(order_id, lines)
        await store.flush(conn, inventory, loaded)
    return answer


async def test_concurrent_reservations_for_the_last_units_never_oversell(inventory_pool):
    sku = f"LAST-{uuid.uuid4().hex[:8].upper()}"
    await receive(inventory_pool, sku, "WH-1", 5)

    answers = await asyncio.gather(*(reserve(inventory_pool, [Line(sku=sku, quantity=1)]) for _ in range(25)))
    assert sum(isinstance(a, StockReserved) for a in answers) == 5
    assert all(a.reason.code == "OUT_OF_STOCK" for a in answers if isinstance(a, StockUnavailable))
    async with inventory_pool.acquire() as conn:
        row = await conn.fetchrow("SELECT on_hand, reserved FROM sku_stock WHERE sku = $1", sku)
        held = await conn.fetchval(
            "SELECT coalesce(sum((l->>'quantity')::int), 0) FROM reservations, jsonb_array_elements(lines) l "
            "WHERE l->>'sku' = $1 AND status = 'held'", sku)
    assert (row["on_hand"], row["reserved"], held) == (5, 5, 5)


async def test_a_multi_line_reservation_is_all_or_nothing(inventory_pool):
    plenty, scarce = f"P-{uuid.uuid4().hex[:8].upper()}", f"S-{uuid.uuid4().hex[:8].upper()}"
    await receive(inventory_pool, plenty, "WH-1", 10)
    await receive(inventory_pool, scarce, "WH-1", 1)
    answer = await reserve(inventory_pool, [Line(sku=plenty, quantity=3), Line(sku=scarce, quantity=2)])
    assert answer.reason.code == "OUT_OF_STOCK"
    assert [(s.sku, s.available) for s in answer.shortages] == [(scarce, 1)]
    async with inventory_pool.acquire() as conn:
        reserved = await conn.fetchval("SELECT sum(reserved) FROM sku_stock WHERE sku = ANY($1)", [plenty, scarce])
    assert reserved == 0


async def test_a_safety_stock_set_while_a_reservation_waits_for_its_locks_is_kept_back(inventory_pool):
    """The batch that set it held the SKU's lock; the reservation waiting for that lock reads safety stocks only
    once it has it (in a statement after the locking one), so it keeps back what was set meanwhile."""
    sku = f"SAFE-{uuid.uuid4().hex[:8].upper()}"
    await receive(inventory_pool, sku, "WH-1", 5)
    async with inventory_pool.acquire() as setter:
        setting = setter.transaction()
        await setting.start()
        await setter.execute("SELECT 1 FROM sku_stock WHERE sku = $1 FOR UPDATE", sku)
        await setter.execute("INSERT INTO sku_safety_stock (sku, location_id, quantity) VALUES ($1, 'WH-1', 4)", sku)
        waiting = asyncio.create_task(reserve(inventory_pool, [Line(sku=sku, quantity=2)]))
        async with inventory_pool.acquire() as observer:
            async def blocked() -> bool:
                return await observer.fetchval("SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
                                               "AND query LIKE '%FROM sku_stock%FOR UPDATE%'") > 0
            await eventually(blocked, what="the reservation waiting for the SKU's lock")
        await setting.commit()
    answer = await waiting
    assert isinstance(answer, StockUnavailable) and [(s.sku, s.available) for s in answer.shortages] == [(sku, 1)]
