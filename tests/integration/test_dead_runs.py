"""A test session sweeps what killed sessions left on the shared broker and database server (tests/support/runs.py),
and nothing of a session still running or of a database kept on purpose."""

import uuid

import asyncpg

from ops.prepare import discard_topics
from ops.waiting import eventually
from shared.messaging.topics import ensure_topics

from ..support import runs


async def test_a_starting_session_sweeps_the_runs_nobody_holds_and_nothing_else(config, run_id):
    dead, living, kept = (uuid.uuid4().hex[:8] for _ in range(3))
    conn = await asyncpg.connect(config.admin_dsn("postgres"))
    try:
        for name in (f"oms_test_{dead}", f"oms_test_{dead}_a1b2c3", f"oms_test_{living}", f"oms_test_{kept}"):
            await conn.execute(f'CREATE DATABASE "{name}"')
        await conn.execute(f"COMMENT ON DATABASE \"oms_test_{kept}\" IS '{runs.KEPT}'")
        for run in (dead, living):
            await ensure_topics(config, prefix=f"test-{run}.", names=["orders.events.v1"])
        async with runs.alive(config, living):
            swept = await runs.sweep_dead_runs(config)
        assert dead in swept and not {living, kept, run_id} & set(swept)
        left = {row["datname"] for row in await conn.fetch("SELECT datname FROM pg_database")}
        assert {f"oms_test_{living}", f"oms_test_{kept}", config.pg_database} <= left
        assert not {f"oms_test_{dead}", f"oms_test_{dead}_a1b2c3"} & left
        topics = await runs._topics(config)
        assert f"test-{living}.orders.events.v1" in topics and f"test-{dead}.orders.events.v1" not in topics
    finally:
        for run in (living, kept):
            await conn.execute(f'DROP DATABASE IF EXISTS "oms_test_{run}" WITH (FORCE)')
        await conn.close()
        await discard_topics(config.model_copy(update={"topic_prefix": f"test-{living}."}))


async def test_a_session_takes_its_lock_again_when_its_connection_is_lost(config):
    """A test restarting the database server ends every connection, the one holding the session's lock with it:
    without taking it again, a session starting later would sweep this one's databases and topics mid-run."""
    run = uuid.uuid4().hex[:8]
    conn = await asyncpg.connect(config.admin_dsn("postgres"))

    async def holder() -> int | None:
        return await conn.fetchval("SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND classid = 0 "
                                   "AND objid = $1 AND objsubid = 1 AND granted", int(run, 16))

    try:
        async with runs.alive(config, run):
            first = await holder()
            assert first is not None
            await conn.execute("SELECT pg_terminate_backend($1)", first)
            second = await eventually(lambda: _other_than(first, holder), timeout=10, what="the lock taken again")
            assert not await conn.fetchval("SELECT pg_try_advisory_lock($1)", int(run, 16))
        assert await eventually(lambda: _released(holder), timeout=10, what="the lock released at the end")
        assert second != first
    finally:
        await conn.close()


async def _other_than(first: int, holder) -> int | None:
    pid = await holder()
    return pid if pid not in (None, first) else None


async def _released(holder) -> bool:
    return await holder() is None
