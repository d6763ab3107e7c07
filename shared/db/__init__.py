"""Postgres access for a service: a pool pinned to the service's own schema, and forward-only migrations."""

import json
import os
from pathlib import Path

import asyncpg
import orjson
import pydantic_core

from shared.logging import get_logger
from shared.settings import service_role

log = get_logger(__name__)

SHARED_MIGRATIONS = Path(__file__).parent / "migrations"

# Nothing waits forever on the database: a pool exhausted or a statement stuck surfaces as a TimeoutError,
# which the runtime treats as transient (retry with backoff) and readiness reports.
ACQUIRE_TIMEOUT = 10.0
STATEMENT_TIMEOUT = 30.0


def encode_json(value: object) -> str:
    """orjson writes JSON about ten times faster than the standard library (capture's saga rows, written on every
    reply, were 10 % of its CPU); what it refuses — integers past 64 bits, keys that are not strings — the
    standard library writes as before."""
    try:
        return orjson.dumps(value).decode()
    except TypeError:
        return json.dumps(value)


def decode_json(text: str) -> object:
    """pydantic-core's parser (jiter) reads JSON about twice as fast as the standard library (capture reads its
    sagas' rows on every reply: the standard library's JSON was a tenth of its CPU) and, unlike orjson, keeps an
    integer past 64 bits an integer; what it refuses, the standard library reads as before."""
    try:
        return pydantic_core.from_json(text)
    except ValueError:
        return json.loads(text)


async def _init_connection(conn: asyncpg.Connection) -> None:
    for jsontype in ("json", "jsonb"):
        await conn.set_type_codec(jsontype, encoder=encode_json, decoder=decode_json, schema="pg_catalog")


async def keep_session(conn: asyncpg.Connection) -> None:
    """A connection going back to the pool keeps its session as it is: asyncpg still rolls back a transaction
    left open, but skips its reset statement (advisory unlock, CLOSE ALL, UNLISTEN, RESET ALL), a round trip per
    unit of work for state our code never sets (locks are transaction-scoped, search_path a startup setting)."""


async def create_pool(dsn: str, schema: str, *, min_size: int = 2, max_size: int = 10) -> asyncpg.Pool:
    return await asyncpg.create_pool(
        dsn,
        min_size=min_size,
        max_size=max_size,
        init=_init_connection,
        reset=keep_session,
        timeout=ACQUIRE_TIMEOUT,
        command_timeout=STATEMENT_TIMEOUT,
        server_settings={"search_path": schema, "application_name": f"oms-{schema}-{os.getpid()}",
                         "idle_in_transaction_session_timeout": str(int(STATEMENT_TIMEOUT * 2000))},
    )


def _migration_files(schema: str, service_migrations: Path) -> list[tuple[str, Path]]:
    """The shared messaging tables, then the service's own SQL files, in name order."""
    return ([(f"shared/{f.name}", f) for f in sorted(SHARED_MIGRATIONS.glob("*.sql"))]
            + [(f"{schema}/{f.name}", f) for f in sorted(service_migrations.glob("*.sql"))])


async def migrate(dsn: str, schema: str, service_migrations: Path) -> list[str]:
    """Apply each migration once, as the schema's owner (`oms prepare`; services have no right to)."""
    conn = await asyncpg.connect(dsn, server_settings={"search_path": schema})
    applied: list[str] = []
    try:
        async with conn.transaction():
            # One migrator per schema at a time, even with several preparers racing.
            await conn.execute("SELECT pg_advisory_xact_lock(hashtext($1))", f"migrate:{schema}")
            await conn.execute("CREATE TABLE IF NOT EXISTS schema_migrations "
                               "(name text PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())")
            done = {r["name"] for r in await conn.fetch("SELECT name FROM schema_migrations")}
            for name, path in _migration_files(schema, service_migrations):
                if name not in done:
                    await conn.execute(path.read_text())
                    await conn.execute("INSERT INTO schema_migrations (name) VALUES ($1)", name)
                    applied.append(name)
            # The runtime role gets row rights on every table by default; this one only the owner writes.
            await conn.execute(f"REVOKE INSERT, UPDATE, DELETE ON schema_migrations FROM {service_role(schema)}")
    finally:
        await conn.close()
    if applied:
        log.info("migrations.applied", schema=schema, migrations=applied)
    return applied


async def require_migrated(pool: asyncpg.Pool, schema: str, service_migrations: Path) -> None:
    """A service starts only on a schema its migrations have been applied to; it cannot apply them itself."""
    try:
        done = {r["name"] for r in await pool.fetch("SELECT name FROM schema_migrations")}
    except asyncpg.UndefinedTableError:
        done = set()
    missing = [name for name, _ in _migration_files(schema, service_migrations) if name not in done]
    if missing:
        raise SystemExit(f"schema {schema} lacks migrations {missing}: run `oms prepare`")
