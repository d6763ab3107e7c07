"""Capture's saga store on its real schema: saving a batch's sagas writes their timeline in the same statement and
returns the states they leave, which the step metrics count from."""

import asyncio
import uuid
from dataclasses import replace

import asyncpg
import pytest

from services.capture import saga as saga_steps
from services.capture import store
from shared.contracts.common import Assignment, Line
from shared.db import create_pool
from ops.waiting import eventually

from .test_saga_deadlines import _order

pytestmark = pytest.mark.integration


async def test_saving_sagas_returns_the_states_they_leave_and_records_the_timeline(capture_pool):
    order_id, placed_now = uuid.uuid4(), uuid.uuid4()
    async with capture_pool.acquire() as conn:
        forged = conn.transaction()  # rolled back: nothing forged here outlives the test
        await forged.start()
        try:
            await store.insert_orders(conn, [(order_id, _order(order_id)), (placed_now, _order(placed_now))])
            reserving = _saga(order_id, "reserving")
            assert await store.save_sagas(conn, [(reserving, "corr-1", {})], step_timeout=60) == {}

            message_id = uuid.uuid4()
            timeline = [store.TimelineEntry(order_id, "in", "StockReserved", message_id, "routing"),
                        store.TimelineEntry(placed_now, "note", "placed", None, "reserving")]
            before = await store.save_sagas(conn, [(_saga(order_id, "routing"), "corr-1", {}),
                                                   (_saga(placed_now, "reserving"), "corr-2", {})],
                                            step_timeout=60, timeline=timeline)
            assert set(before) == {order_id}, "a saga stored for the first time left no state"
            state, seconds = before[order_id]
            assert state == "reserving" and seconds >= 0
            states = dict(await conn.fetch("SELECT order_id, state FROM order_sagas WHERE order_id = ANY($1)",
                                           [order_id, placed_now]))
            assert states == {order_id: "routing", placed_now: "reserving"}
            entries = await conn.fetch("SELECT order_id, direction, message_type, message_id, saga_state "
                                       "FROM order_timeline WHERE order_id = ANY($1) ORDER BY direction",
                                       [order_id, placed_now])
            assert [tuple(e) for e in entries] == [(order_id, "in", "StockReserved", message_id, "routing"),
                                                   (placed_now, "note", "placed", None, "reserving")]
        finally:
            await forged.rollback()


async def test_a_saga_keeps_the_kind_of_each_location_it_plans_and_requests(capture_pool):
    """What routing says a location is travels on with the saga's plan and parts (RequestFulfillment's
    location_kind), across steps and so across saves; parts stored before the field read back without one."""
    order_id = uuid.uuid4()
    plan = (Assignment(location_id="WH-1", lines=[Line(sku="SKU-1", quantity=1)], location_kind="warehouse"),)
    parts = (saga_steps.Part("DS-1", (Line(sku="SKU-1", quantity=1),), "requested", location_kind="dropship"),
             saga_steps.Part("ST-1", (Line(sku="SKU-1", quantity=1),), "rejected"))
    async with capture_pool.acquire() as conn:
        forged = conn.transaction()
        await forged.start()
        try:
            await store.insert_orders(conn, [(order_id, _order(order_id))])
            saved = replace(_saga(order_id, "fulfilling"), plan=plan, parts=parts)
            await store.save_sagas(conn, [(saved, "corr-1", {})], step_timeout=60)
            [(loaded, _)] = (await store.load_sagas(conn, [order_id])).values()
            assert (loaded.plan, loaded.parts) == (plan, parts)
            await conn.execute("UPDATE order_sagas SET parts = (SELECT jsonb_agg(p - 'location_kind') FROM "
                               "jsonb_array_elements(parts) AS p) WHERE order_id = $1", order_id)
            [(older, _)] = (await store.load_sagas(conn, [order_id])).values()
            assert [p.location_kind for p in older.parts] == [None, None]
        finally:
            await forged.rollback()


async def test_an_order_purged_while_it_is_placed_again_is_not_placed(capture_pool):
    """A channel's PlaceOrder whose insert waited for the purge of the same order (its row being deleted) would go
    on once the purge committed: its statement's snapshot, older than the purge's commit, did not see the purged id.
    The insert fails as a serialization failure instead (the consumer retries it), and the retry is refused."""
    order_id, order = uuid.uuid4(), _order(uuid.uuid4())
    async with capture_pool.acquire() as conn:
        await store.insert_orders(conn, [(order_id, order)])
        await store.save_sagas(conn, [(_saga(order_id, "delivered"), "corr", {})], step_timeout=60)
        await conn.execute("UPDATE order_sagas SET state_since = now() - interval '100 years' WHERE order_id = $1",
                           order_id)  # the oldest closed order there is: the purge below takes it alone
    try:
        async with capture_pool.acquire() as purging, capture_pool.acquire() as placing:
            async with purging.transaction():
                assert [p.order_id for p in await store.purge_closed(purging, 365, 1)] == [order_id]
                placed_again = placing.transaction()
                await placed_again.start()
                insert = asyncio.create_task(store.insert_orders(placing, [(order_id, order)]))
                blocked = "SELECT cardinality(pg_blocking_pids($1)) > 0"
                await eventually(lambda: purging.fetchval(blocked, placing.get_server_pid()),
                                 what="the insert to wait for the purge")
            with pytest.raises(asyncpg.SerializationError):
                await insert
            await placed_again.rollback()
            assert await store.insert_orders(placing, [(order_id, order)]) == set(), "refused on the retry"
            assert set(await store.purged_orders(placing, [order_id])) == {order_id}
    finally:
        async with capture_pool.acquire() as conn:
            for table in ("order_timeline", "order_sagas", "orders"):  # what the purge did not take, if it failed
                await conn.execute(f"DELETE FROM {table} WHERE order_id = $1", order_id)
            await conn.execute("DELETE FROM purged_orders WHERE order_id = $1", order_id)


def _saga(order_id: uuid.UUID, state: str) -> saga_steps.Saga:
    return saga_steps.Saga(order_id=order_id, state=state, lines=(Line(sku="SKU-1", quantity=1),),
                           delivery=_order(order_id).delivery)


@pytest.fixture
async def unused_capture_pool(config):
    """Connections that have prepared no statement yet, so hold no plan cached on other tests' data."""
    pool = await create_pool(config.service_dsn("capture"), "capture", min_size=1, max_size=1)
    yield pool
    await pool.close()


async def test_saving_a_saga_reads_its_order_and_saga_by_key_however_many_orders_there_are(unused_capture_pool):
    """A batch's saga save once joined its input (which the planner takes for 100 rows) to every order and every
    saga: two sequential scans per save, growing with the orders ever taken (183 buffers a save after a 6,000-order
    bench). On a connection of its own: one that has saved sagas before may hold a plan it cached when the tables
    were nearly empty (statements are prepared, and after five runs Postgres may keep a generic plan)."""
    order_id = uuid.uuid4()
    async with unused_capture_pool.acquire() as conn:
        forged = conn.transaction()  # rolled back: nothing forged here outlives the test
        await forged.start()
        try:
            others = [uuid.uuid4() for _ in range(3000)]
            await store.insert_orders(conn, [(o, _order(o)) for o in [order_id, *others]])
            await store.save_sagas(conn, [(_saga(o, "reserving"), "corr", {}) for o in [order_id, *others]],
                                   step_timeout=60)
            await conn.execute("ANALYZE orders; ANALYZE order_sagas")
            scans = "SELECT relname, seq_scan FROM pg_stat_xact_user_tables WHERE relname = ANY($1)"
            before = dict(await conn.fetch(scans, ["orders", "order_sagas"]))
            await store.save_sagas(conn, [(_saga(order_id, "routing"), "corr", {})], step_timeout=60,
                                   timeline=[store.TimelineEntry(order_id, "note", "test", None, "routing")])
            after = dict(await conn.fetch(scans, ["orders", "order_sagas"]))
            assert after == before, f"no table read whole: {before} {after}"
        finally:
            await forged.rollback()
