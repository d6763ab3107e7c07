"""Transactional outbox: stage events in the caller's transaction; a relay publishes them to Kafka.

The relay takes unsent rows (never by a high-water mark, which would skip rows committed out of order),
deletes them and publishes them with an idempotent acks=all producer in one transaction, which commits only
after Kafka has acknowledged every one. A crash in between leaves the rows to be published again; consumers
deduplicate by event id.
"""

import asyncio
from dataclasses import dataclass
from uuid import UUID

import asyncpg
from aiokafka import AIOKafkaProducer

from shared.contracts import Contract, Envelope, wrap
from shared.logging import get_logger

from .retry import Backoff, is_transient

log = get_logger(__name__)


@dataclass(frozen=True)
class OutboxRow:
    event_id: UUID
    topic: str
    key: str
    value: bytes

    @classmethod
    def of(cls, envelope: Envelope, topic: str, key: str) -> "OutboxRow":
        return cls(envelope.id, topic, key, envelope.model_dump_json().encode())


def stage(payload: Contract, *, source: str, correlation_id: str, causation_id: str | None = None) -> OutboxRow:
    envelope = wrap(payload, source=source, correlation_id=correlation_id, causation_id=causation_id)
    return OutboxRow.of(envelope, payload.topic, payload.key())


async def write(conn: asyncpg.Connection, rows: list[OutboxRow], schema: str) -> None:
    """Stage rows in the caller's transaction; the relay is notified when it commits."""
    if not rows:
        return
    await conn.execute(
        """WITH staged AS (
             INSERT INTO outbox (event_id, topic, key, value)
             SELECT * FROM unnest($1::uuid[], $2::text[], $3::text[], $4::bytea[]) RETURNING 1
           )
           SELECT pg_notify($5, ''), (SELECT count(*) FROM staged)""",
        [r.event_id for r in rows], [r.topic for r in rows], [r.key for r in rows], [r.value for r in rows],
        notify_channel(schema),
    )


def notify_channel(schema: str) -> str:
    return f"oms_outbox_{schema}"


def make_producer(bootstrap: str, client_id: str) -> AIOKafkaProducer:
    return AIOKafkaProducer(
        bootstrap_servers=bootstrap,
        client_id=client_id,
        acks="all",
        enable_idempotence=True,
        compression_type="snappy",  # least CPU per batch of the codecs on a CPU-bound host: docs/benchmark.md
        linger_ms=2,
        max_batch_size=256 * 1024,
    )


class OutboxRelay:
    """Publishes a service's outbox. One relay per schema works at a time (advisory lock), which keeps
    per-key order when several instances of a service run."""

    def __init__(self, pool: asyncpg.Pool, producer: AIOKafkaProducer, schema: str, topic_prefix: str,
                 batch_size: int = 1000, idle_poll_seconds: float = 1.0):
        self.pool = pool
        self.producer = producer
        self.schema = schema
        self.topic_prefix = topic_prefix
        self.batch_size = batch_size
        self.idle_poll_seconds = idle_poll_seconds
        self._wakeup = asyncio.Event()

    async def run(self) -> None:
        backoff = Backoff()
        listener: asyncpg.Connection | None = None
        while True:
            try:
                if listener is None or listener.is_closed():
                    listener = await self._listen()
                published = await self.publish_pending()
                backoff.reset()
                if published < self.batch_size:
                    await self._wait_for_work()
            except asyncio.CancelledError:
                if listener is not None and not listener.is_closed():
                    await listener.close()
                raise
            except Exception as error:  # the relay must outlive any outage; it retries with backoff
                if listener is not None and not is_transient(error):
                    log.exception("outbox.relay_failed", schema=self.schema)
                else:
                    log.warning("outbox.relay_retry", schema=self.schema, error=repr(error))
                listener = None
                await backoff.sleep()

    async def _listen(self) -> asyncpg.Connection:
        conn = await self.pool.acquire()
        await conn.add_listener(notify_channel(self.schema), lambda *_: self._wakeup.set())
        return conn

    async def _wait_for_work(self) -> None:
        try:
            await asyncio.wait_for(self._wakeup.wait(), self.idle_poll_seconds)
        except TimeoutError:
            pass
        self._wakeup.clear()

    def wake(self) -> None:
        """Publish now: called in-process right after a transaction that staged rows has committed."""
        self._wakeup.set()

    async def publish_pending(self) -> int:
        async with self.pool.acquire() as conn, conn.transaction():
            if not await conn.fetchval("SELECT pg_try_advisory_xact_lock(hashtext($1))", f"outbox:{self.schema}"):
                return 0
            # Deleted inside the transaction: if publishing fails, the rollback brings every row back.
            rows = sorted(await conn.fetch(
                "DELETE FROM outbox WHERE seq IN (SELECT seq FROM outbox ORDER BY seq LIMIT $1 FOR UPDATE) "
                "RETURNING seq, topic, key, value", self.batch_size), key=lambda r: r["seq"])
            deliveries = [
                await self.producer.send(self.topic_prefix + r["topic"], value=r["value"], key=r["key"].encode())
                for r in rows
            ]
            await asyncio.gather(*deliveries)
            return len(rows)
