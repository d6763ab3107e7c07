"""What channels may ask the inventory service over HTTP (read-only, no lock taken)."""

import asyncpg
from pydantic import TypeAdapter, ValidationError

from shared.contracts.common import Sku
from shared.contracts.inventory import Atp
from shared.db import ACQUIRE_TIMEOUT

from . import store

SKU = TypeAdapter(Sku)


async def atp(pool: asyncpg.Pool, sku: str) -> Atp | None:
    """`GET /atp/{sku}`: network and per-location available to promise; None (404) for a SKU never stocked."""
    try:
        SKU.validate_python(sku)
    except ValidationError:
        return None
    async with pool.acquire(timeout=ACQUIRE_TIMEOUT) as conn:
        answer = await store.read_atp(conn, sku)
    return answer if answer.on_hand or answer.locations else None
