"""Liveness and readiness of a service, judged every couple of seconds from what it really does.

Ready means: the database answers; the outbox is being published (its oldest row is young); every consumer is
running, not stuck retrying a batch, and not sitting behind records it does not consume. Live means the
process's event loop answers at all (the supervisor restarts a process that is not).
"""

import asyncio
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import asyncpg
from aiokafka import AIOKafkaConsumer
from faststream.asgi import AsgiResponse, get
from prometheus_client import make_asgi_app

from shared.db import ACQUIRE_TIMEOUT
from shared.logging import get_logger

from .monitor import (
    CHECK_OK,
    CONSUMER_LAG,
    OUTBOX_BACKLOG,
    OUTBOX_OLDEST_AGE,
    OUTBOX_PARKED,
    READY,
    REGISTRY,
    ConsumerMonitor,
)
from .outbox import backlog_sql
from .retry import run_forever

log = get_logger(__name__)

PROBE_INTERVAL = 2.0
FAILING_TOO_LONG = 10.0  # seconds a consumer may retry one batch (an outage blip) before it is not ready
STALLED_AFTER = 30.0  # seconds behind unread records without finishing a batch
OUTBOX_TOO_OLD = 30.0  # seconds the oldest unpublished row may wait


@dataclass
class Watched:
    """A consumer as readiness sees it: its progress, and how to reach its Kafka client (None until started)."""

    monitor: ConsumerMonitor
    kafka: Callable[[], AIOKafkaConsumer | None]
    running: Callable[[], bool]


@dataclass
class Health:
    service: str
    pool: asyncpg.Pool | None = None
    consumers: list[Watched] = field(default_factory=list)
    problems: list[str] = field(default_factory=lambda: ["starting"])
    checked_at: float = 0.0

    def __post_init__(self) -> None:
        READY.labels(self.service).set_function(lambda: int(self.ready))  # read at every scrape

    async def watch(self) -> None:
        async def probe_forever() -> None:
            while True:
                self.problems = await self._problems()
                self.checked_at = time.monotonic()
                await asyncio.sleep(PROBE_INTERVAL)

        await run_forever("health-probe", probe_forever,
                          on_failure=lambda error: setattr(self, "problems", [f"health probe: {error!r}"]))

    async def _problems(self) -> list[str]:
        for watched in self.consumers:
            revive_coordination(watched.kafka(), watched.monitor.topic)
        database = await self._database_problems()
        consumers = [problem for watched in self.consumers for problem in _consumer_problems(watched)]
        checks = {"database": not any(problem.startswith("database:") for problem in database),
                  "outbox": not database,  # not known to be published in time while the database does not answer
                  "consumers": not consumers}
        for check, ok in checks.items():
            CHECK_OK.labels(self.service, check).set(int(ok))
        return database + consumers

    async def _database_problems(self) -> list[str]:
        try:
            async with self.pool.acquire(timeout=ACQUIRE_TIMEOUT) as conn:
                backlog, oldest, parked = await conn.fetchrow(
                    f"SELECT {backlog_sql()}, (SELECT count(*) FROM outbox_parked)", timeout=5)
        except Exception as error:
            return [f"database: {error!r}"[:300]]
        OUTBOX_BACKLOG.labels(self.service).set(backlog)
        OUTBOX_OLDEST_AGE.labels(self.service).set(oldest or 0)
        OUTBOX_PARKED.labels(self.service).set(parked)
        if oldest and oldest > OUTBOX_TOO_OLD:
            return [f"outbox: {backlog} rows waiting, the oldest for {oldest:.0f}s"]
        return []

    def report(self) -> dict[str, Any]:
        return {"service": self.service, "ready": self.ready, "problems": self.problems,
                "checked_seconds_ago": round(time.monotonic() - self.checked_at, 1) if self.checked_at else None}

    @property
    def ready(self) -> bool:
        fresh = time.monotonic() - self.checked_at < 5 * PROBE_INTERVAL
        return fresh and not self.problems

    def routes(self) -> list[tuple[str, Any]]:
        @get(include_in_schema=False)
        async def live(scope: Any) -> AsgiResponse:
            return _json({"service": self.service, "live": True}, 200)

        @get(include_in_schema=False)
        async def ready(scope: Any) -> AsgiResponse:
            return _json(self.report(), 200 if self.ready else 503)

        return [("/health/live", live), ("/health/ready", ready), ("/metrics", make_asgi_app(REGISTRY))]


def _consumer_problems(watched: Watched) -> list[str]:
    monitor = watched.monitor
    if not watched.running():
        return [f"consumer {monitor.topic}: not running"]
    if monitor.failing_for() > FAILING_TOO_LONG:
        return [f"consumer {monitor.topic}: retrying one batch for {monitor.failing_for():.0f}s "
                f"({monitor.last_error})"]
    behind = _lag(watched.kafka(), monitor)
    idle = time.monotonic() - monitor.last_progress
    if behind and idle > STALLED_AFTER:
        return [f"consumer {monitor.topic}: {behind} records behind and no batch finished for {idle:.0f}s"]
    return []


def revive_coordination(consumer: AIOKafkaConsumer | None, topic: str) -> bool:
    """aiokafka's group coordination can end for good on an assertion of its own (`assignment is not None and
    assignment.active`: a pattern subscription's topics changed while the group rejoined after a broker restart);
    its consumer then fails every fetch with that error and never consumes again, in a process that looks alive.
    Found by the broker-restart fault test: fulfillment stopped reading location updates; the same assertion is
    reported upstream, aio-libs/aiokafka#796 (open since 2021). The routine is started again, rejoining the group
    (offsets are committed only after the effect: nothing is lost or applied twice). Drop this once a fixed
    aiokafka is pinned."""
    coordinator = getattr(consumer, "_coordinator", None)
    task = getattr(coordinator, "_coordination_task", None)
    if task is None or not task.done() or task.cancelled() or task.exception() is None:
        return False
    log.error("consumer.coordination_revived", topic=topic, error=repr(task.exception()))
    coordinator.request_rejoin()
    coordinator._coordination_task = asyncio.get_running_loop().create_task(coordinator._coordination_routine())
    return True


def _lag(consumer: AIOKafkaConsumer | None, monitor: ConsumerMonitor) -> int:
    """Records between the consumer's position and each assigned partition's end, as last fetched."""
    subscription = consumer._subscription.subscription if consumer is not None else None
    assignment = subscription.assignment if subscription is not None else None
    if assignment is None:
        return 0
    total = 0
    for partition in assignment.tps:
        end = consumer.highwater(partition)
        position = assignment.state_value(partition)  # read without I/O, unlike consumer.position()
        if end is None or position is None or not position.has_valid_position:
            continue
        lag = max(end - position.position, 0)
        CONSUMER_LAG.labels(monitor.service, monitor.topic, str(partition.partition)).set(lag)
        total += lag
    return total


def _json(body: dict, status: int) -> AsgiResponse:
    return AsgiResponse(json.dumps(body).encode(), status, headers={"content-type": "application/json"})
