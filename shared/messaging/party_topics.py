"""What the outbox relay does with a message for an outside party whose own topic does not exist.

A party's own topics (`orders.events.v1.<channel>`, `fulfillment.work.v1.<location>`) are created by ops when the
party is added (ops/principals.py: add_party), never by a service, which may not create topics. A message for a
party without one must not stop the relay (the producer would wait out its metadata timeout, and the batch be
retried for ever), so the relay asks here first:
- a channel's copy of an order event is skipped (counted, logged once per topic): the event is on the shared
  `orders.events.v1` for our services, the ERP and ops, and no principal could read the copy;
- a message that exists only on the party's topic (work, a purchase order) is held: set aside in `outbox_parked`
  (reason NO_PARTY_TOPIC), with every later one for that topic, and put back in the outbox, in order, once ops
  has created the topic (`oms principal add location ...`).
"""

import asyncio
from collections import Counter

import asyncpg
from aiokafka import AIOKafkaProducer

from shared.contracts.topics import PER_PARTY_ONLY, read_per_party
from shared.logging import get_logger

from .monitor import PARTY_COPIES_SKIPPED

log = get_logger(__name__)

HELD = "NO_PARTY_TOPIC"
# How stale the list of topics may be before a copy is skipped for want of its topic.
REFRESH_SECONDS = 1.0


def held_reason(topic: str) -> str:
    return f"{HELD}: {topic} does not exist (yet): ops creates it when the party is added (oms principal add)"


def only_per_party(topic: str) -> bool:
    return read_per_party(topic) in PER_PARTY_ONLY


class PartyTopics:
    """The party topics (unprefixed names) a relay's producer can see, looked up when one it has not seen comes."""

    def __init__(self, service: str, topic_prefix: str):
        self.service = service
        self.topic_prefix = topic_prefix
        self._existing: set[str] = set()
        self._refreshed_at = float("-inf")
        self._skipping: set[str] = set()

    async def sort_out(self, conn: asyncpg.Connection | None, producer: AIOKafkaProducer,
                       rows: list[asyncpg.Record]) -> tuple[list[asyncpg.Record], list[tuple[asyncpg.Record, str]]]:
        """The rows to send, and those to hold with the reason; copies for a channel without a topic are dropped.
        `conn` is needed only if a row is for a topic that exists only per party (held_topics)."""
        topics = {row["topic"] for row in rows}
        absent = await self.absent(producer, topics)
        held = {t for t in absent if only_per_party(t)} | await held_topics(conn, topics)
        for topic, count in Counter(row["topic"] for row in rows if row["topic"] in absent - held).items():
            self.skipped(topic, count)
        return ([row for row in rows if row["topic"] not in absent | held],
                [(row, held_reason(row["topic"])) for row in rows if row["topic"] in held])

    async def absent(self, producer: AIOKafkaProducer, topics: set[str]) -> set[str]:
        """The party topics among `topics` that do not exist. Unknown ones are looked up (every topic's metadata):
        at once when one only a party has is unknown, else at most once every REFRESH_SECONDS."""
        unknown = {t for t in topics if read_per_party(t) and not self.exists(t)}
        stale = asyncio.get_running_loop().time() - self._refreshed_at > REFRESH_SECONDS
        if unknown and (stale or any(map(only_per_party, unknown))):
            await self.refresh(producer)
        return {t for t in unknown if not self.exists(t)}

    def exists(self, topic: str) -> bool:
        return self.topic_prefix + topic in self._existing

    async def refresh(self, producer: AIOKafkaProducer) -> None:
        self._existing = set((await producer.client.fetch_all_metadata()).topics())
        self._refreshed_at = asyncio.get_running_loop().time()

    def skipped(self, topic: str, count: int) -> None:
        PARTY_COPIES_SKIPPED.labels(self.service, topic).inc(count)
        if topic not in self._skipping:
            self._skipping.add(topic)
            log.info("outbox.party_copy_skipped", topic=topic, reason="the party has no topic of its own")


async def held_topics(conn: asyncpg.Connection, topics: set[str]) -> set[str]:
    """Those of `topics` that have messages held: what comes after them for that party waits behind them."""
    candidates = [t for t in topics if only_per_party(t)]
    if not candidates:
        return set()
    rows = await conn.fetch("SELECT DISTINCT topic FROM outbox_parked WHERE topic = ANY($1) AND reason LIKE $2",
                            candidates, HELD + ":%")
    return {r["topic"] for r in rows}


async def release(conn: asyncpg.Connection, producer: AIOKafkaProducer, topics: PartyTopics) -> int:
    """Puts the held messages whose topic now exists back in the outbox, in the order they were staged."""
    waiting = [r["topic"] for r in await conn.fetch(
        "SELECT DISTINCT topic FROM outbox_parked WHERE reason LIKE $1", HELD + ":%")]
    if not waiting:
        return 0
    await topics.refresh(producer)
    ready = [t for t in waiting if topics.exists(t)]
    if not ready:
        return 0
    released = await conn.fetchval(
        """WITH released AS (
             DELETE FROM outbox_parked WHERE topic = ANY($1) AND reason LIKE $2
             RETURNING event_id, topic, key, value, headers, created_at
           ), inserted AS (
             INSERT INTO outbox (event_id, topic, key, value, headers, created_at)
             SELECT * FROM released ORDER BY created_at RETURNING 1
           )
           SELECT count(*) FROM inserted""", ready, HELD + ":%")
    log.info("outbox.held_released", topics=ready, count=released)
    return released
