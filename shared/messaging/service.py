"""Builds a service's FastStream app: topics, pool, migrations, outbox relay, one batch subscriber per topic,
and an HTTP side (uvicorn, through FastStream's ASGI app) with /health/live, /health/ready and /metrics.

Subscribers hand their polled records to the runtime as they came (handed_over), so that bytes that are not
JSON, or not a valid envelope, reach the dead-letter path instead of failing inside the framework. A batch's
offsets are noted as applied only when the handler returns, which is after every record of the batch has its
effect or its dead letter committed, and committed beside consuming (offsets.py); if the handler ever raises
(only on shutdown), the consumer seeks back and the batch is read again, never committed past.
"""

import asyncio
import logging
import re
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass, field
from itertools import chain
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import asyncpg
import uvloop
from aiokafka import AIOKafkaConsumer
from aiokafka.structs import ConsumerRecord
from faststream import AckPolicy
from faststream.asgi import AsgiFastStream, AsgiResponse, get
from faststream.kafka import KafkaBroker, KafkaRouter, Topic
from pydantic import BaseModel

from shared.contracts.topics import DEAD_LETTERS, PER_PARTY_ONLY
from shared.db import create_pool, require_migrated
from shared.logging import configure_logging, get_logger
from shared.settings import DEFAULT_HTTP_PORTS, settings

from .consumer import Consumer, Subscription
from .health import Health, Watched
from .instance import sole_instance
from .monitor import ConsumerMonitor
from .offsets import CommitBeforeRevocation, OffsetCommitter, rewind
from .outbox import OutboxRelay, make_producer
from .retention import prune_inbox
from .tracing import configure_tracing
from .topics import require_topics
from .unit_of_work import Begin, units_of_work

log = get_logger(__name__)

BackgroundTask = Callable[[Begin], Awaitable[None]]
# A read-only HTTP query: the pool and the rest of the path after its prefix; None answers 404.
Query = Callable[[asyncpg.Pool, str], Awaitable[BaseModel | None]]

# Static membership (KIP-345): a restarted member rejoins under its instance id and gets its partitions back
# without a rebalance. The session timeout is how long the broker keeps a silent member's partitions for it
# before handing them to the other instances: longer than a supervised restart (backoff + start-up, ~3 s),
# short enough that a member that does not come back costs only seconds. aiokafka sends no LeaveGroup for a
# static member, so a clean stop waits out the session too, but a rolling restart moves no partitions.
SESSION_TIMEOUT_MS = 10_000
HEARTBEAT_INTERVAL_MS = 1_000
# How often a client refreshes its metadata, and so how soon a per-party subscription sees a new party's topic.
PARTY_TOPIC_DISCOVERY_MS = 5_000
# How long one poll waits for records when there are none; it returns as soon as some arrive. Longer waits cost
# an idle consumer fewer wake-ups (at 5 orders/s the services' CPU per order: 20 ms 89, 200 ms 70, 500 ms 65).
POLL_WAIT_MS = 500
BATCH_BYTES = 1 << 20  # what ends a batching subscription's fetch early (Subscription.batch_wait_ms)


@dataclass(frozen=True)
class ServiceDefinition:
    """A service, top to bottom: its schema, the topics it reads (and the handler of each message type), the
    work it does on its own, and the topics it writes."""

    name: str
    migrations: Path
    subscriptions: list[Subscription]
    publishes: tuple[str, ...]
    background: list[BackgroundTask] = field(default_factory=list)
    queries: dict[str, Query] = field(default_factory=dict)  # path prefix (ending in /) -> query, on the HTTP side
    # Shared topics whose every party's own `<topic>.<party>` it writes, speaking for that party (tracking's HTTP
    # intake, which knows the channel from its API key); it stages those rows in its outbox itself.
    publishes_for_parties: tuple[str, ...] = ()
    # An HTTP API of its own beside /health and /metrics, built once with the means to reach the pool.
    api: Callable[[Callable[[], asyncpg.Pool | None]], Any] | None = None

    @property
    def reads(self) -> tuple[str, ...]:
        return tuple(subscription.topic for subscription in self.subscriptions)

    @property
    def writes(self) -> tuple[str, ...]:
        """What it publishes, and the dead letters every consumer may write."""
        return (*self.publishes, DEAD_LETTERS)


def consumer_group(service: str, topic: str) -> str:
    """Prefixed like the topics: test runs share the broker, and their static members must not fence each other."""
    return f"{settings().topic_prefix}{consumer_group_prefix(service)}{topic}"


def instance_name(service: str) -> str:
    """What makes each of the service's static group memberships its own, as consumer_group's prefix does."""
    return f"{settings().topic_prefix}{consumer_group_prefix(service)}{settings().instance_id}"


def consumer_group_prefix(service: str) -> str:
    """Every consumer group of the service starts with this (after the topic prefix): its ACLs grant exactly these."""
    return f"oms.{service}."


class ServiceAsgi(AsgiFastStream):
    """FastStream's ASGI app matches paths exactly; here a route whose path ends in `/` also serves every path
    below it (`/atp/` serves `/atp/{sku}`), and the service's own API (if any) every path no route serves."""

    def __init__(self, *args: Any, api: Any = None, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.api = api

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            for path, app in self.routes:
                if path.endswith("/") and scope["path"].startswith(path) and scope["path"] != path:
                    await app(scope, receive, send)
                    return
            if self.api is not None and all(scope["path"] != path for path, _ in self.routes):
                await self.api(scope, receive, send)
                return
        await super().__call__(scope, receive, send)


def query_route(prefix: str, query: Query, pool: Callable[[], asyncpg.Pool | None]) -> Any:
    @get(include_in_schema=False)
    async def answer(scope: Any) -> AsgiResponse:
        if pool() is None:
            return _json_response(b'{"error": "starting"}', 503)
        result = await query(pool(), unquote(scope["path"][len(prefix):]))
        if result is None:
            return _json_response(b'{"error": "not found"}', 404)
        return _json_response(result.model_dump_json().encode(), 200)

    return answer


def _json_response(body: bytes, status: int) -> AsgiResponse:
    return AsgiResponse(body, status, headers={"content-type": "application/json"})


def build_app(definition: ServiceDefinition) -> AsgiFastStream:
    config = settings()
    configure_logging(definition.name, config.log_level)
    tracer_provider = configure_tracing(definition.name)
    # FastStream logs through our JSON handler; its per-message "Received/Processed" lines are DEBUG.
    # The service logs in as itself: it may read what it consumes and write what it publishes, nothing else.
    login = config.kafka_login(definition.name)
    broker = KafkaBroker(login.bootstrap, client_id=f"oms-{definition.name}",
                         security=login.faststream(), metadata_max_age_ms=PARTY_TOPIC_DISCOVERY_MS,
                         logger=logging.getLogger("faststream.oms"), log_level=logging.DEBUG)
    consumers: dict[str, Consumer] = {}
    health = Health(definition.name)
    # The service's topics, unprefixed in its definition; the router puts a test run's prefix before each.
    router = KafkaRouter(prefix=config.topic_prefix)
    committers = [_subscribe(router, definition.name, subscription, consumers, health, config.consumer_max_records)
                  for subscription in definition.subscriptions]
    broker.include_router(router)
    pool: asyncpg.Pool | None = None

    @asynccontextmanager
    async def lifespan() -> AsyncIterator[None]:
        async with sole_instance(config.service_dsn(definition.name), instance_name(definition.name),
                                 config.instance_wait_seconds), serving():
            yield

    @asynccontextmanager
    async def serving() -> AsyncIterator[None]:
        nonlocal pool
        await require_topics(login, [config.topic(t) for t in {*definition.reads, *definition.writes}
                                     if t not in PER_PARTY_ONLY])  # a party's own are made with the party
        pool = await create_pool(config.service_dsn(definition.name), definition.name)
        await require_migrated(pool, definition.name, definition.migrations)
        relay = OutboxRelay(pool, lambda: make_producer(login, f"oms-{definition.name}-relay"),
                            definition.name, config.topic_prefix)
        health.pool = pool
        writes = frozenset(definition.writes)
        begin = units_of_work(pool, definition.name, writes, config, relay=relay)
        for watched, subscription in zip(health.consumers, definition.subscriptions, strict=True):
            group = consumer_group(definition.name, subscription.topic)
            consumers[group] = Consumer(pool, service=definition.name, writes=writes, group=group,
                                        settings=config, monitor=watched.monitor, relay=relay)
        tasks = [asyncio.create_task(relay.run(), name="outbox-relay"),
                 asyncio.create_task(health.watch(), name="health")]
        tasks += [asyncio.create_task(task(begin), name=task.__name__)
                  for task in [prune_inbox, *definition.background]]
        tasks += [asyncio.create_task(committer.run(), name=f"offsets-{committer.group}") for committer in committers]
        log.info("service.started", topics=[s.topic for s in definition.subscriptions])
        try:
            yield
        finally:
            for task in tasks:
                task.cancel()
            for task in tasks:
                with suppress(asyncio.CancelledError):
                    await task
            await pool.close()
            tracer_provider.shutdown()  # exports the spans still queued
            log.info("service.stopped")

    queries = [(prefix, query_route(prefix, query, lambda: pool)) for prefix, query in definition.queries.items()]
    api = definition.api(lambda: pool) if definition.api else None
    return ServiceAsgi(broker, lifespan=lifespan, asgi_routes=[*health.routes(), *queries], api=api)


def _subscribe(router: KafkaRouter, service: str, subscription: Subscription, consumers: dict[str, Consumer],
               health: Health, max_records: int) -> OffsetCommitter:
    group = consumer_group(service, subscription.topic)
    committer = OffsetCommitter(lambda: subscriber.consumer, group)

    async def consume(records: tuple[ConsumerRecord, ...]) -> None:
        try:
            await consumers[group].process(subscription, records)
        except BaseException:
            rewind(subscriber.consumer, records)
            raise
        committer.applied(records)

    consume.__name__ = f"consume_{subscription.topic.replace('.', '_').replace('-', '_')}"
    subscriber = router.subscriber(
        *_topics(subscription),
        pattern=_party_topics_pattern(subscription.topic) if subscription.per_party else None,
        group_id=group,
        group_instance_id=f"{group}-{settings().instance_id}",
        session_timeout_ms=SESSION_TIMEOUT_MS,
        heartbeat_interval_ms=HEARTBEAT_INTERVAL_MS,
        batch=True,
        max_records=max_records,
        batch_timeout_ms=POLL_WAIT_MS,
        **({"fetch_min_bytes": BATCH_BYTES, "fetch_max_wait_ms": subscription.batch_wait_ms}
           if subscription.batch_wait_ms else {}),
        auto_offset_reset="earliest",
        listener=CommitBeforeRevocation(committer),
        ack_policy=AckPolicy.MANUAL,  # offsets.py commits what was applied
        title=f"{service}:{subscription.topic}",
    )
    subscriber(consume)  # FastStream runs a subscriber's poll loop only once it has a handler
    subscriber.get_msg = polled_back_to_back(subscriber)
    subscriber.consume_one = handed_over(subscriber, consume)
    health.consumers.append(Watched(
        ConsumerMonitor(service, subscription.topic),
        kafka=lambda: subscriber.consumer,
        running=lambda: subscriber.running and all(not task.done() for task in subscriber.tasks),
    ))
    return committer


def polled_back_to_back(subscriber: Any) -> Callable[[AIOKafkaConsumer], Awaitable[tuple[ConsumerRecord, ...]]]:
    """The subscriber's poll without FastStream's sleep after an empty one (0.7.8: as long as the poll's wait),
    during which a record that arrives waits for the sleep to end: up to that long on every hop (end to end at 5
    orders/s, p50 100 → 51 ms; docs/benchmark.md). aiokafka's getmany itself waits for records, up to
    POLL_WAIT_MS, and returns as soon as some arrive, so polls back to back neither spin nor delay a record."""
    async def get_msg(consumer: AIOKafkaConsumer) -> tuple[ConsumerRecord, ...]:
        batches = await consumer.getmany(timeout_ms=subscriber.batch_timeout_ms, max_records=subscriber.max_records)
        return tuple(chain.from_iterable(batches.values()))
    return get_msg


def handed_over(subscriber: Any, consume: Callable[[tuple[ConsumerRecord, ...]], Awaitable[None]]
                ) -> Callable[[tuple[ConsumerRecord, ...]], Awaitable[None]]:
    """Each polled batch straight to the runtime, not through FastStream's per-message stack (context scopes,
    middlewares, its parser and decoder, dependency injection): for the batch of a record or two that every hop
    reads below saturation, that stack took three times the CPU of the runtime's own work on a record it skips
    (docs/benchmark.md). Kept from it: no batch is taken once the subscriber is stopping, a stop waits for the
    batch under way (the subscriber's lock, up to the broker's graceful timeout), and a failure is logged and the
    polls go on (the batch was rewound: it is read again). FastStream never parses a record, so a header value
    that is not UTF-8 cannot fail a batch, nor a `reply_to` header send the handler's result anywhere."""
    async def consume_one(records: tuple[ConsumerRecord, ...]) -> None:
        if not subscriber.running:
            return
        with subscriber.lock:
            try:
                await consume(records)
            except Exception:
                log.exception("consumer.batch_failed", topic=records[0].topic, records=len(records))
    return consume_one


def _topics(subscription: Subscription) -> list[Topic]:
    # `oms prepare` creates the topics; the service may not. A per-party subscription reads them by pattern.
    return [] if subscription.per_party else [Topic(subscription.topic, declare=False)]


def _party_topics_pattern(topic: str) -> str:
    """The shared topic and every party's own (`<topic>.<party>`); the router puts the run's prefix before it. A
    party's topic created later (`oms principal add`) is found at the next metadata refresh
    (PARTY_TOPIC_DISCOVERY_MS) and read from its start."""
    return re.escape(topic) + r"(\.[A-Za-z0-9_-]+)?$"


def http_port(service: str) -> int:
    return settings().http_port or DEFAULT_HTTP_PORTS[service]


def run(definition: ServiceDefinition) -> None:
    """On uvloop (libuv, by asyncpg's authors): every hop is socket round trips to Kafka and Postgres, which it
    serves with less CPU than asyncio's own loop (docs/benchmark.md)."""
    app = build_app(definition)
    uvloop.run(app.run(log_level=logging.WARNING,
                       run_extra_options={"host": settings().http_host, "port": http_port(definition.name),
                                          "log_config": None}))  # uvicorn logs through our JSON handler
