"""The stock ledger on real Postgres: several connections apply random command streams at once (each command in
a transaction of its own, as the service does: rows loaded locked, changed by the domain, written back with
their ledger entries). No deadlock, no negative counter, and the ledger sums to the counters, as `oms check`
sees it."""

import asyncio
import random
import uuid

import asyncpg
import pytest

from ops.invariants import STOCK_LEDGER
from services.inventory import store
from shared.contracts.common import Line
from shared.contracts.inventory import StockAdjusted

pytestmark = pytest.mark.integration

WRITERS = 6
COMMANDS_PER_WRITER = 40


def random_command(rng: random.Random, skus: list[str], locations: list[str], orders: list[uuid.UUID]) -> tuple:
    sku, location, order = rng.choice(skus), rng.choice(locations), rng.choice(orders)
    document = f"D-{uuid.uuid4()}"
    return rng.choice([
        ("reserve", order, [Line(sku=s, quantity=rng.randint(1, 4)) for s in rng.sample(skus, rng.randint(1, 2))]),
        ("allocate", order, location),
        ("deallocate", order, location),
        ("release", order),
        ("commit", order),
        ("expire", order),
        ("receive", document, sku, location, rng.randint(1, 8)),
        ("count", document, sku, location, rng.randint(0, 10)),
        ("adjust", document, sku, location, rng.randint(-5, 5)),
        ("set_safety_stock", location, sku, rng.randint(0, 3)),
    ])


def touched(command: tuple) -> tuple[set[uuid.UUID], set[str], set[str]]:
    name, *args = command
    if name == "reserve":
        return {args[0]}, {line.sku for line in args[1]}, set()
    if name in ("receive", "count", "adjust"):
        return set(), {args[1]}, {args[2]}
    if name == "set_safety_stock":
        return set(), {args[1]}, {args[0]}
    return {args[0]}, set(), set()


async def apply(pool, command: tuple) -> None:
    """As the service applies a command, the documents it books included (`oms check` reads them too)."""
    order_ids, skus, locations = touched(command)
    name, *args = command
    async with pool.acquire() as conn, conn.transaction():
        inventory, loaded = await store.load(conn, order_ids, skus, locations)
        inventory.cause = f"test-{uuid.uuid4()}"
        if name == "receive" and not await store.claim_receipt(conn, *args):
            return
        if name in ("count", "adjust") and await store.document_booked(conn, args[0]):
            return
        answer = getattr(inventory, name)(*args)
        if isinstance(answer, StockAdjusted):
            await store.book_document(conn, answer.document_id, answer.kind, answer.sku, answer.location_id,
                                      answer.change)
        await store.flush(conn, inventory, loaded)


async def writer(pool, seed: int, skus, locations, orders) -> None:
    rng = random.Random(seed)
    for _ in range(COMMANDS_PER_WRITER):
        await apply(pool, random_command(rng, skus, locations, orders))


async def test_concurrent_random_streams_keep_the_ledger_equal_to_the_counters(inventory_pool, admin):
    tag = uuid.uuid4().hex[:6].upper()
    skus = [f"LG{tag}-{i}" for i in range(3)]
    locations = [f"LG{tag}-WH{i}" for i in range(3)]
    orders = [uuid.uuid4() for _ in range(12)]
    for sku in skus:
        for location in locations:
            await apply(inventory_pool, ("receive", f"open-{sku}-{location}", sku, location, 5))

    await asyncio.gather(*(writer(inventory_pool, seed, skus, locations, orders) for seed in range(WRITERS)))

    mismatches = [dict(r) for r in await admin.fetch(STOCK_LEDGER) if r["sku"] in skus]
    assert mismatches == []
    kinds = {r["kind"] for r in await admin.fetch(
        "SELECT DISTINCT kind FROM inventory.stock_ledger WHERE sku = ANY($1)", skus)}
    assert {"receipt", "reserve"} <= kinds
    negative = await admin.fetchval(
        "SELECT count(*) FROM inventory.location_stock WHERE sku = ANY($1) AND (on_hand < 0 OR allocated < 0)", skus)
    assert negative == 0


async def test_the_ledger_is_append_only(inventory_pool):
    sku = f"AO-{uuid.uuid4().hex[:8].upper()}"
    await apply(inventory_pool, ("receive", f"r-{sku}", sku, "WH-1", 3))
    for statement in ("UPDATE stock_ledger SET on_hand = 4 WHERE sku = $1", "DELETE FROM stock_ledger WHERE sku = $1"):
        with pytest.raises(asyncpg.RaiseError, match="append-only"):
            await inventory_pool.execute(statement, sku)
