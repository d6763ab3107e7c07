"""Concurrent reservations on real Postgres never take more than is on hand."""

import asyncio
import uuid

import pytest

from services.inventory import store
from shared.contracts.common import Line

pytestmark = pytest.mark.integration


async def test_concurrent_holds_for_the_last_units_never_oversell(inventory_pool):
    sku = f"LAST-{uuid.uuid4().hex[:8].upper()}"
    async with inventory_pool.acquire() as conn:
        await store.receive(conn, f"r-{sku}", sku, "WH-1", 5)

    async def try_hold() -> bool:
        async with inventory_pool.acquire() as conn, conn.transaction():
            try:
                await store.hold(conn, uuid.uuid4(), [Line(sku=sku, quantity=1)])
                return True
            except store.Rejected:
                return False

    results = await asyncio.gather(*(try_hold() for _ in range(25)))
    assert sum(results) == 5
    async with inventory_pool.acquire() as conn:
        row = await conn.fetchrow("SELECT on_hand, reserved FROM sku_stock WHERE sku = $1", sku)
        held = await conn.fetchval(
            "SELECT coalesce(sum((l->>'quantity')::int), 0) FROM reservations, jsonb_array_elements(lines) l "
            "WHERE l->>'sku' = $1 AND status = 'held'", sku)
    assert (row["on_hand"], row["reserved"], held) == (5, 5, 5)


async def test_a_multi_line_hold_is_all_or_nothing(inventory_pool):
    plenty, scarce = f"P-{uuid.uuid4().hex[:8].upper()}", f"S-{uuid.uuid4().hex[:8].upper()}"
    async with inventory_pool.acquire() as conn:
        await store.receive(conn, f"r-{plenty}", plenty, "WH-1", 10)
        await store.receive(conn, f"r-{scarce}", scarce, "WH-1", 1)
        async with conn.transaction():
            with pytest.raises(store.Rejected) as refused:
                await store.hold(conn, uuid.uuid4(), [Line(sku=plenty, quantity=3), Line(sku=scarce, quantity=2)])
        assert refused.value.code == "OUT_OF_STOCK"
        reserved = await conn.fetchval("SELECT sum(reserved) FROM sku_stock WHERE sku = ANY($1)", [plenty, scarce])
    assert reserved == 0
