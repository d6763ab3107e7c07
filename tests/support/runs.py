"""Test sessions share the developer's broker and database server; one killed before its teardown leaves its
databases, topics and ACLs behind (dozens of topics each, hundreds of partitions the broker keeps serving). Each
session holds a lock named after its run for as long as it lives; a session starting sweeps the runs whose lock
nobody holds. A database kept for a look afterwards (OMS_TEST_KEEP_DATABASE=1) is marked and left alone."""

import re
from contextlib import asynccontextmanager

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
    """The run's lock, held by a connection of its own until the session ends (or its process dies)."""
    conn = await asyncpg.connect(settings.admin_dsn("postgres"))
    try:
        await conn.execute("SELECT pg_advisory_lock($1)", _key(run_id))
        yield
    finally:
        await conn.close()


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
