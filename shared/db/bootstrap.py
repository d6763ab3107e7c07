"""Creates the OMS database and, for each service, two roles: an owner that owns the service's schema and runs
its migrations, and a runtime role with row rights (SELECT, INSERT, UPDATE, DELETE) on that schema only — it
can neither change the schema (DROP, ALTER, TRUNCATE) nor see another's. A read-only role sees every schema,
for the ops tools. Run by `oms prepare` (and the tests) as the database superuser; no service ever is."""

import asyncpg

from shared.logging import get_logger
from shared.settings import READER_ROLE, Settings, owner_role, secret, service_role

log = get_logger(__name__)

SERVICES = ("capture", "inventory", "routing", "fulfillment", "notification", "tracking")


async def bootstrap_database(settings: Settings, services: tuple[str, ...] = SERVICES) -> None:
    await _create_database(settings)
    conn = await asyncpg.connect(settings.admin_dsn())
    try:
        async with conn.transaction():
            # Serialise concurrent bootstraps (CLI and tests may race); role DDL is not IF NOT EXISTS-safe.
            await conn.execute("SELECT pg_advisory_xact_lock(hashtext('oms-bootstrap'))")
            await conn.execute("REVOKE ALL ON SCHEMA public FROM PUBLIC")
            await conn.execute(f'REVOKE ALL ON DATABASE "{settings.pg_database}" FROM PUBLIC')
            await _login_role(conn, settings, READER_ROLE, secret("OMS_OPS_READER_DB_PASSWORD"))
            for service in services:
                await _service_roles(conn, settings, service)
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


async def _login_role(conn: asyncpg.Connection, settings: Settings, role: str, password: str) -> None:
    verb = "ALTER" if await conn.fetchval("SELECT 1 FROM pg_roles WHERE rolname = $1", role) else "CREATE"
    # Passwords cannot be bound as parameters in DDL; quote_literal does the escaping.
    literal = await conn.fetchval("SELECT quote_literal($1)", password)
    await conn.execute(f"{verb} ROLE {role} LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOINHERIT PASSWORD {literal}")
    await conn.execute(f'GRANT CONNECT ON DATABASE "{settings.pg_database}" TO {role}')


async def _service_roles(conn: asyncpg.Connection, settings: Settings, service: str) -> None:
    owner, runtime = owner_role(service), service_role(service)
    await _login_role(conn, settings, owner, secret(f"OMS_{service.upper()}_OWNER_DB_PASSWORD"))
    await _login_role(conn, settings, runtime, secret(f"OMS_{service.upper()}_DB_PASSWORD"))
    await conn.execute(f"CREATE SCHEMA IF NOT EXISTS {service} AUTHORIZATION {owner}")
    await conn.execute(f"ALTER SCHEMA {service} OWNER TO {owner}")
    await conn.execute(f"REASSIGN OWNED BY {runtime} TO {owner}")  # a database from before the owner roles
    for role in (owner, runtime):
        await conn.execute(f'ALTER ROLE {role} IN DATABASE "{settings.pg_database}" SET search_path = {service}')
    await conn.execute(f"GRANT USAGE ON SCHEMA {service} TO {runtime}, {READER_ROLE}")
    rights = {runtime: ("SELECT, INSERT, UPDATE, DELETE", "USAGE, SELECT"), READER_ROLE: ("SELECT", "SELECT")}
    for role, (on_tables, on_sequences) in rights.items():
        await conn.execute(f"GRANT {on_tables} ON ALL TABLES IN SCHEMA {service} TO {role}")
        await conn.execute(f"GRANT {on_sequences} ON ALL SEQUENCES IN SCHEMA {service} TO {role}")
        await conn.execute(f"ALTER DEFAULT PRIVILEGES FOR ROLE {owner} IN SCHEMA {service} "
                           f"GRANT {on_tables} ON TABLES TO {role}")
        await conn.execute(f"ALTER DEFAULT PRIVILEGES FOR ROLE {owner} IN SCHEMA {service} "
                           f"GRANT {on_sequences} ON SEQUENCES TO {role}")
