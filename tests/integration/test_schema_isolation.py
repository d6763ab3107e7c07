"""Each service's role can use its own schema and nothing else."""

import asyncpg
import pytest

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
