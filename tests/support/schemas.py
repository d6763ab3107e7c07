"""Copies of a service's tables in a schema of a test's own, reached as the service's runtime role: the session's
services work through what is due in their own schemas (deliveries to send, histories to publish) and would take
the rows from under a test that used those."""

import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import asyncpg

from shared.db import create_pool
from shared.db.bootstrap import service_role
from shared.settings import Settings


@asynccontextmanager
async def own_copy(config: Settings, admin: asyncpg.Pool, service: str,
                   tables: tuple[str, ...]) -> AsyncIterator[asyncpg.Pool]:
    schema = f"{service}_test_{uuid.uuid4().hex[:8]}"
    async with admin.acquire() as conn:
        await conn.execute(f"CREATE SCHEMA {schema}")
        for table in tables:
            await conn.execute(f"CREATE TABLE {schema}.{table} (LIKE {service}.{table} INCLUDING ALL)")
        await conn.execute(f"GRANT USAGE ON SCHEMA {schema} TO {service_role(service)}")
        await conn.execute(f"GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA {schema} "
                           f"TO {service_role(service)}")
    pool = await create_pool(config.service_dsn(service), schema)
    try:
        yield pool
    finally:
        await pool.close()
        async with admin.acquire() as conn:
            await conn.execute(f"DROP SCHEMA {schema} CASCADE")
