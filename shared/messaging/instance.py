"""One live process per instance id. The id is each consumer's static group membership (KIP-345); a second live
process given the same one (two copies of a unit file, `OMS_INSTANCE_ID` set by hand) does not fail: each join
fences the other member, aiokafka rejoins, and the two take turns at every partition for as long as both run,
consuming little. So a service holds a session advisory lock named after its id, on a connection of its own, for
as long as it runs, and a second process that cannot get it stops before it joins a group, saying why.

A holder that dies closes its connection, and Postgres lets the lock go at once; one that vanishes with its host
is noticed by the connection's keepalives (about 25 seconds), which is why a starting process waits a little.
A session of a live holder can end too (Postgres restarted, the session terminated): the holder takes the lock
again as soon as it can connect, and if another process has taken it meanwhile, the holder stops, saying why.
A session that stops answering without closing (the database's host gone, a network partition: half-open) would
be noticed only by the client's next write, so the holder asks it something every PROBE_SECONDS and takes a
session that does not answer in PROBE_TIMEOUT_SECONDS for ended (the server drops it after its keepalives).
"""

import asyncio
import signal
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress

import asyncpg

from shared.logging import get_logger

from .retry import Backoff

log = get_logger(__name__)

# What a vanished holder's session is given before Postgres drops it (idle, interval, count): 10 + 3 × 5 seconds.
KEEPALIVES = {"tcp_keepalives_idle": "10", "tcp_keepalives_interval": "5", "tcp_keepalives_count": "3"}
RETRY_SECONDS = 0.5
PROBE_SECONDS, PROBE_TIMEOUT_SECONDS = 10.0, 5.0


def session_name(name: str) -> str:
    """The application name of the session that holds `name` (Postgres keeps its first 63 bytes)."""
    return f"instance {name}"[:63]


class InstanceInUse(SystemExit):
    def __init__(self, name: str):
        super().__init__(f"instance id {name!r} is held by another live process: give each process of a service "
                         "its own OMS_INSTANCE_ID (two with one id fence each other out of their consumer groups)")


@asynccontextmanager
async def sole_instance(dsn: str, name: str, wait_seconds: float) -> AsyncIterator[None]:
    """Holds `name` while the block runs; raises InstanceInUse if another session holds it for `wait_seconds`.
    Should the lock's session end while the block runs and another process take the lock before this one has
    it again, the process is stopped as it would be by a SIGTERM."""
    lock = _InstanceLock(dsn, name, wait_seconds)
    await lock.take()
    keeper = asyncio.create_task(lock.keep(), name="instance-lock")
    try:
        yield
    finally:
        keeper.cancel()
        with suppress(asyncio.CancelledError):
            await keeper
        await lock.release()


class _InstanceLock:
    def __init__(self, dsn: str, name: str, wait_seconds: float):
        self.dsn = dsn
        self.name = name
        self.wait_seconds = wait_seconds
        self.conn: asyncpg.Connection | None = None

    async def take(self) -> None:
        conn = await asyncpg.connect(self.dsn,
                                     server_settings={**KEEPALIVES, "application_name": session_name(self.name)})
        try:
            deadline = time.monotonic() + self.wait_seconds
            while not await conn.fetchval("SELECT pg_try_advisory_lock(hashtextextended($1, 0))",
                                          f"instance:{self.name}"):
                if time.monotonic() >= deadline:
                    log.error("service.instance_id_in_use", instance=self.name)
                    raise InstanceInUse(self.name)
                await asyncio.sleep(RETRY_SECONDS)
        except BaseException:
            await conn.close()
            raise
        self.conn = conn

    async def keep(self) -> None:
        """Takes the lock again each time its session ends: a process given the id meanwhile would find it free."""
        while True:
            ended = asyncio.Event()
            self.conn.add_termination_listener(lambda _: ended.set())
            await self._until_ended(ended)
            log.warning("service.instance_lock_lost", instance=self.name)
            try:
                await self._take_again()
            except InstanceInUse:
                signal.raise_signal(signal.SIGTERM)  # the service's own graceful stop
                return
            log.info("service.instance_lock_taken_again", instance=self.name)

    async def _until_ended(self, ended: asyncio.Event) -> None:
        while True:
            with suppress(TimeoutError):
                async with asyncio.timeout(PROBE_SECONDS):
                    await ended.wait()
                return
            try:
                async with asyncio.timeout(PROBE_TIMEOUT_SECONDS):
                    await self.conn.fetchval("SELECT 1")
            except Exception as error:  # no answer in time, or broken: this session is gone for this process
                log.warning("service.instance_session_silent", instance=self.name, error=repr(error)[:300])
                self.conn.terminate()  # which ends it here, the termination listener included

    async def _take_again(self) -> None:
        backoff = Backoff(first=RETRY_SECONDS)
        while True:
            try:
                await self.take()
                return
            except Exception as error:  # Postgres not back yet, or refusing: the process goes on meanwhile
                log.warning("service.instance_lock_retry", instance=self.name, error=repr(error)[:300])
            await backoff.sleep()

    async def release(self) -> None:
        if self.conn is not None:
            await self.conn.close()
