import pytest

from shared.db import create_pool
from shared.settings import Settings


async def service_pool(config: Settings, service: str):
    """The service's runtime role, on the schema the session prepared."""
    return await create_pool(config.service_dsn(service), service)


@pytest.fixture(scope="session")
async def inventory_pool(config):
    pool = await service_pool(config, "inventory")
    yield pool
    await pool.close()


@pytest.fixture(scope="session")
async def capture_pool(config):
    pool = await service_pool(config, "capture")
    yield pool
    await pool.close()
