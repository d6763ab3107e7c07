"""Creates the OMS database, and for each service a login role that owns its schema and can touch nothing else."""

import asyncpg

from shared.logging import get_logger
from shared.settings import Settings, service_password, service_role

log = get_logger(__name__)

SERVICES = ("capture", "inventory", "routing", "fulfillment", "notification")


async def bootstrap_database(settings: Settings, services: tuple[str, ...] = SERVICES) -> None:
    await _create_database(settings)
    conn = await asyncpg.connect(settings.admin_dsn())
    try:
        async with conn.transaction():
            # Serialise concurrent bootstraps (CLI and tests may race); role DDL is not IF NOT EXISTS-safe.
            await conn.execute("SELECT pg_advisory_xact_lock(hashtext('oms-bootstrap'))")
            await conn.execute("REVOKE ALL ON SCHEMA public FROM PUBLIC")
            await conn.execute(f'REVOKE ALL ON DATABASE "{settings.pg_database}" FROM PUBLIC')
            for service in services:
                await _create_service_role(conn, settings, service)
    finally:
        await conn.close()


async def _create_database(settings: Settings) -> None:
    conn = await asyncpg.connect(settings.admin_dsn("postgres"))
    try:
        exists = await conn.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", settings.pg_database)
        if not exists:
            await conn.execute(f'CREATE DATABASE "{settings.pg_database}"')
            log.info("database.created", database=settings.pg_database)
    except asyncpg.DuplicateDatabaseError:
        pass
    finally:
        await conn.close()


async def _create_service_role(conn: asyncpg.Connection, settings: Settings, service: str) -> None:
    role = service_role(service)
    password = service_password(service)
    exists = await conn.fetchval("SELECT 1 FROM pg_roles WHERE rolname = $1", role)
    verb = "ALTER" if exists else "CREATE"
    # Passwords cannot be bound as parameters in DDL; quote_literal does the escaping.
    literal = await conn.fetchval("SELECT quote_literal($1)", password)
    await conn.execute(f"{verb} ROLE {role} LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE PASSWORD {literal}")
    await conn.execute(f'GRANT CONNECT ON DATABASE "{settings.pg_database}" TO {role}')
    await conn.execute(f"CREATE SCHEMA IF NOT EXISTS {service} AUTHORIZATION {role}")
    await conn.execute(f"ALTER ROLE {role} SET search_path = {service}")
