"""Each service's runtime role can read and write rows of its own schema and nothing else; it owns nothing and
cannot change the schema; the ops role only reads; a service process is given only its own password."""

from pathlib import Path

import asyncpg
import pytest

from shared.db import create_pool
from shared.db.bootstrap import SERVICES
from shared.settings import READER_ROLE, Settings, service_role

from ..support.services import running

pytestmark = pytest.mark.integration


async def test_inventory_cannot_read_capture_tables(inventory_pool, capture_pool):
    async with capture_pool.acquire() as conn:
        await conn.fetch("SELECT * FROM capture.orders LIMIT 1")  # capture reads its own
    async with inventory_pool.acquire() as conn:
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            await conn.fetch("SELECT * FROM capture.orders")
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            await conn.execute("INSERT INTO capture.inbox (message_key) VALUES ('x')")


async def test_service_roles_cannot_create_objects_outside_their_schema(inventory_pool):
    async with inventory_pool.acquire() as conn:
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            await conn.execute("CREATE TABLE public.sneaky (id int)")
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            await conn.execute("CREATE SCHEMA sneaky")


async def test_unqualified_names_resolve_to_the_own_schema(inventory_pool):
    async with inventory_pool.acquire() as conn:
        assert await conn.fetchval("SELECT current_schema()") == "inventory"


@pytest.mark.parametrize("statement", [
    "DROP TABLE inventory.reservations",
    "TRUNCATE inventory.inbox",
    "ALTER TABLE inventory.inbox ADD COLUMN sneaky int",
    "CREATE TABLE inventory.sneaky (id int)",
    "DELETE FROM inventory.schema_migrations",
])
async def test_a_runtime_role_cannot_change_its_own_schema(inventory_pool, statement):
    async with inventory_pool.acquire() as conn:
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            await conn.execute(statement)


async def test_runtime_and_ops_roles_own_nothing(admin):
    roles = [service_role(service) for service in SERVICES] + [READER_ROLE]
    owned = await admin.fetch("SELECT c.relname FROM pg_class c JOIN pg_roles r ON r.oid = c.relowner "
                              "WHERE r.rolname = ANY($1)", roles)
    schemas = await admin.fetch("SELECT nspname FROM pg_namespace n JOIN pg_roles r ON r.oid = n.nspowner "
                                "WHERE r.rolname = ANY($1)", roles)
    assert (owned, schemas) == ([], [])


async def test_the_ops_reader_reads_every_schema_and_writes_nothing(config):
    conn = await asyncpg.connect(config.reader_dsn())
    try:
        for service in SERVICES:
            await conn.fetch(f"SELECT * FROM {service}.inbox LIMIT 1")
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            await conn.execute("INSERT INTO capture.inbox (message_key) VALUES ('x')")
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            await conn.execute("DELETE FROM inventory.outbox")
    finally:
        await conn.close()


async def test_a_service_process_gets_its_own_passwords_and_no_other(config, tmp_path):
    async with running(("routing",), tmp_path) as procs:
        environ = Path(f"/proc/{procs['routing'].pid()}/environ").read_bytes().split(b"\0")
    passwords = {line.split(b"=", 1)[0].decode() for line in environ if b"PASSWORD=" in line}
    assert passwords == {"OMS_ROUTING_DB_PASSWORD", "OMS_ROUTING_KAFKA_PASSWORD"}


def test_dsns_escape_what_they_carry(monkeypatch):
    monkeypatch.setenv("OMS_ROUTING_DB_PASSWORD", "p@ss:w/rd?#%")
    config = Settings(kafka_bootstrap="k:1", pg_host="127.0.0.1", pg_port=5432, pg_database="oms db")
    dsn = config.service_dsn("routing")
    assert dsn == "postgresql://oms_routing:p%40ss%3Aw%2Frd%3F%23%25@127.0.0.1:5432/oms%20db"


async def test_a_connection_back_in_the_pool_keeps_its_schema_but_not_a_transaction_left_open(config):
    pool = await create_pool(config.service_dsn("inventory"), "inventory", min_size=1, max_size=1)
    try:
        async with pool.acquire() as conn:
            await conn.execute("BEGIN")  # left open, as a defect would leave it
            await conn.execute("INSERT INTO inbox (message_key) VALUES ('left-open')")
            backend = conn.get_server_pid()
        async with pool.acquire() as again:
            assert again.get_server_pid() == backend and not again.is_in_transaction()
            assert await again.fetchval("SHOW search_path") == "inventory"
            assert await again.fetchval("SELECT count(*) FROM inbox WHERE message_key = 'left-open'") == 0
    finally:
        await pool.close()
