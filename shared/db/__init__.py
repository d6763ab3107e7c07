"""Postgres access for a service: a pool pinned to the service's own schema, and forward-only migrations."""

import json
from pathlib import Path

import asyncpg

from shared.logging import get_logger

log = get_logger(__name__)

SHARED_MIGRATIONS = Path(__file__).parent / "migrations"

# Nothing waits forever on the database: a pool exhausted or a statement stuck surfaces as a TimeoutError,
# which the runtime treats as transient (retry with backoff) and readiness reports.
ACQUIRE_TIMEOUT = 10.0
STATEMENT_TIMEOUT = 30.0


async def _init_connection(conn: asyncpg.Connection) -> None:
    for jsontype in ("json", "jsonb"):
        await conn.set_type_codec(jsontype, encoder=json.dumps, decoder=json.loads, schema="pg_catalog")


async def create_pool(dsn: str, schema: str, *, min_size: int = 2, max_size: int = 10) -> asyncpg.Pool:
    return await asyncpg.create_pool(
        dsn,
        min_size=min_size,
        max_size=max_size,
        init=_init_connection,
        timeout=ACQUIRE_TIMEOUT,
        command_timeout=STATEMENT_TIMEOUT,
        server_settings={"search_path": schema, "application_name": f"oms-{schema}",
                         "idle_in_transaction_session_timeout": str(int(STATEMENT_TIMEOUT * 2000))},
    )


async def migrate(pool: asyncpg.Pool, schema: str, service_migrations: Path) -> list[str]:
    """Apply the shared messaging tables, then the service's own SQL files, each once, in name order."""
    files = [("shared", f) for f in sorted(SHARED_MIGRATIONS.glob("*.sql"))]
    files += [(schema, f) for f in sorted(service_migrations.glob("*.sql"))]
    applied: list[str] = []
    async with pool.acquire() as conn, conn.transaction():
        # One migrator per schema at a time, even with several instances starting together.
        await conn.execute("SELECT pg_advisory_xact_lock(hashtext($1))", f"migrate:{schema}")
        await conn.execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations (name text PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())"
        )
        done = {r["name"] for r in await conn.fetch("SELECT name FROM schema_migrations")}
        for origin, path in files:
            name = f"{origin}/{path.name}"
            if name in done:
                continue
            await conn.execute(path.read_text())
            await conn.execute("INSERT INTO schema_migrations (name) VALUES ($1)", name)
            applied.append(name)
    if applied:
        log.info("migrations.applied", schema=schema, migrations=applied)
    return applied
