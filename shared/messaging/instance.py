"""One live process per instance id. The id is each consumer's static group membership (KIP-345); a second live
process given the same one (two copies of a unit file, `OMS_INSTANCE_ID` set by hand) does not fail: each join
fences the other member, aiokafka rejoins, and the two take turns at every partition for as long as both run,
consuming little. So a service holds a session advisory lock named after its id, on a connection of its own, for
as long as it runs, and a second process that cannot get it stops before it joins a group, saying why.

A holder that dies closes its connection, and Postgres lets the lock go at once; one that vanishes with its host
is noticed by the connection's keepalives (about 25 seconds), which is why a starting process waits a little.
"""

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import asyncpg

from shared.logging import get_logger

log = get_logger(__name__)

# What a vanished holder's session is given before Postgres drops it (idle, interval, count): 10 + 3 × 5 seconds.
KEEPALIVES = {"tcp_keepalives_idle": "10", "tcp_keepalives_interval": "5", "tcp_keepalives_count": "3"}
RETRY_SECONDS = 0.5


class InstanceInUse(SystemExit):
    def __init__(self, name: str):
        super().__init__(f"instance id {name!r} is held by another live process: give each process of a service "
                         "its own OMS_INSTANCE_ID (two with one id fence each other out of their consumer groups)")


@asynccontextmanager
async def sole_instance(dsn: str, name: str, wait_seconds: float) -> AsyncIterator[None]:
    """Holds `name` while the block runs; raises InstanceInUse if another session holds it for `wait_seconds`."""
    conn = await asyncpg.connect(dsn, server_settings={**KEEPALIVES, "application_name": f"instance {name}"})
    try:
        deadline = time.monotonic() + wait_seconds
        while not await conn.fetchval("SELECT pg_try_advisory_lock(hashtextextended($1, 0))", f"instance:{name}"):
            if time.monotonic() >= deadline:
                log.error("service.instance_id_in_use", instance=name)
                raise InstanceInUse(name)
            await asyncio.sleep(RETRY_SECONDS)
        yield
    finally:
        await conn.close()
