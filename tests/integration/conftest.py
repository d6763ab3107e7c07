from pathlib import Path

import pytest

from shared.db import create_pool, migrate
from shared.settings import Settings

SERVICES_DIR = Path(__file__).resolve().parents[2] / "services"


async def service_pool(config: Settings, service: str):
    pool = await create_pool(config.service_dsn(service), service)
    await migrate(pool, service, SERVICES_DIR / service / "migrations")
    return pool


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
