"""Test sessions share the developer's broker and database server; one killed before its teardown leaves its
databases, topics and ACLs behind (dozens of topics each, hundreds of partitions the broker keeps serving). Each
session holds a lock named after its run for as long as it lives; a session starting sweeps the runs whose lock
nobody holds. A database kept for a look afterwards (OMS_TEST_KEEP_DATABASE=1) is marked and left alone."""

import asyncio
import re
from contextlib import asynccontextmanager, suppress

import asyncpg
from aiokafka.admin import AIOKafkaAdminClient

from ops.prepare import discard_topics
from shared.settings import Settings

RUN_DATABASE = re.compile(r"^oms_test_([0-9a-f]{8})(_[0-9a-f]+)?$")  # a session's, and its stacks' (a suffix)
RUN_TOPIC = re.compile(r"^test-([0-9a-f]{8})\.")
KEPT = "kept by OMS_TEST_KEEP_DATABASE"


def _key(run_id: str) -> int:
    return int(run_id, 16)  # eight hex digits: the session-level advisory lock's bigint key, in the postgres database


@asynccontextmanager
async def alive(settings: Settings, run_id: str):
    """The run's lock, held by a connection of its own until the session ends (or its process dies). Taken again
    when that connection is lost: a test restarting the database server ends every connection, and a session
    starting later would otherwise sweep this one's databases and topics mid-run."""
    holding = asyncio.create_task(_hold(settings, run_id, await _lock(settings, run_id)))
    try:
        yield
    finally:
        holding.cancel()
        with suppress(asyncio.CancelledError):
            await holding


async def _lock(settings: Settings, run_id: str) -> asyncpg.Connection:
    conn = await asyncpg.connect(settings.admin_dsn("postgres"))
    try:
        await conn.execute("SELECT pg_advisory_lock($1)", _key(run_id))
    except BaseException:
        await conn.close()
        raise
    return conn


async def _hold(settings: Settings, run_id: str, conn: asyncpg.Connection) -> None:
    try:
        while True:
            lost = asyncio.Event()
            conn.add_termination_listener(lambda _: lost.set())
            if not conn.is_closed():
                await lost.wait()
            conn = await _lock_once_reachable(settings, run_id)
    finally:
        await conn.close()


async def _lock_once_reachable(settings: Settings, run_id: str) -> asyncpg.Connection:
    while True:
        try:
            return await _lock(settings, run_id)
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError):  # the server restarting
            await asyncio.sleep(0.5)


async def keep(settings: Settings) -> None:
    conn = await asyncpg.connect(settings.admin_dsn("postgres"))
    try:
        await conn.execute(f"COMMENT ON DATABASE \"{settings.pg_database}\" IS '{KEPT}'")
    finally:
        await conn.close()


async def sweep_dead_runs(settings: Settings) -> list[str]:
    """Drops the databases and topics (and the ACLs on them) of every run no session holds; returns those runs."""
    conn = await asyncpg.connect(settings.admin_dsn("postgres"))
    try:
        databases = [row["datname"] for row in await conn.fetch(
            "SELECT datname FROM pg_database WHERE datname LIKE 'oms\\_test\\_%' "
            "AND shobj_description(oid, 'pg_database') IS DISTINCT FROM $1", KEPT)]
        by_run: dict[str, list[str]] = {}
        for name in databases:
            if match := RUN_DATABASE.match(name):
                by_run.setdefault(match[1], []).append(name)
        for topic in await _topics(settings):
            if match := RUN_TOPIC.match(topic):
                by_run.setdefault(match[1], [])
        swept = []
        for run_id, run_databases in sorted(by_run.items()):
            if not await conn.fetchval("SELECT pg_try_advisory_lock($1)", _key(run_id)):
                continue  # a live session's
            try:
                for name in run_databases:
                    await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
                await discard_topics(settings.model_copy(update={"topic_prefix": f"test-{run_id}."}))
            finally:
                await conn.execute("SELECT pg_advisory_unlock($1)", _key(run_id))
            swept.append(run_id)
        return swept
    finally:
        await conn.close()


async def _topics(settings: Settings) -> list[str]:
    admin = AIOKafkaAdminClient(**settings.kafka_login().aiokafka(), client_id="oms-test-sweep")
    await admin.start()
    try:
        return await admin.list_topics()
    finally:
        await admin.close()
