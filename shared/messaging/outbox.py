"""Transactional outbox: stage events in the caller's transaction; a relay publishes them to Kafka.

The relay takes unsent rows (never by a high-water mark, which would skip rows committed out of order),
deletes them and publishes them with an idempotent acks=all producer in one transaction, which commits only
after Kafka has acknowledged every one. A crash in between, or a database crash that loses that commit (it does
not wait for the disk), leaves the rows to be published again; consumers deduplicate by event id.

A relay that is the only one of its service hands off instead: its own process's units of work give it the rows
they have just committed, which it publishes without claiming them, and deletes in batches once acknowledged
(OutboxRelay, "Handing off").
"""

import asyncio
from collections import Counter
from collections.abc import Callable
from contextlib import suppress
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import lru_cache
from typing import NamedTuple
from uuid import UUID, uuid4

import asyncpg
from aiokafka import AIOKafkaProducer
from aiokafka.errors import (
    InvalidTopicError,
    MessageSizeTooLargeError,
    RecordListTooLargeError,
    RecordTooLargeError,
)
from aiokafka.partitioner import DefaultPartitioner, murmur2

from shared.contracts import Contract, Envelope
from shared.contracts.base import encode
from shared.contracts.topics import destinations
from shared.db import ACQUIRE_TIMEOUT
from shared.logging import get_logger
from shared.settings import KafkaLogin

from .monitor import MESSAGES_PUBLISHED
from .party_topics import PartyTopics, only_per_party, release
from .retry import run_forever

log = get_logger(__name__)


@dataclass(frozen=True)
class OutboxRow:
    event_id: UUID
    topic: str
    key: str
    value: bytes | None  # None: a tombstone, which removes the key's record from a compacted topic
    headers: dict[str, str]  # sent as Kafka record headers: the W3C trace context of the step that staged it

    @classmethod
    def of(cls, envelope: Envelope, topic: str, key: str, headers: dict[str, str]) -> "OutboxRow":
        return cls(envelope.id, topic, key, envelope.model_dump_json().encode(), headers)


class Staged(NamedTuple):
    """A row as written, numbered: what a unit of work hands its relay once committed."""
    seq: int
    row: OutboxRow


def tombstone(topic: str, key: str, headers: dict[str, str]) -> OutboxRow:
    """A record with the key and no value: a compacted topic then forgets the key (after its
    delete.retention.ms, readers of the topic's start included)."""
    return OutboxRow(uuid4(), topic, key, None, headers)


def stage(payload: Contract, *, source: str, correlation_id: str, causation_id: str | None = None,
          headers: dict[str, str], party: str | None = None) -> list[OutboxRow]:
    """The rows of one message, one per topic it goes to: on a topic read per party, its party's own (`party`, or
    rather the one the message names), and the topic itself unless that exists only per party. One envelope, one id."""
    envelope, value = encode(payload, source=source, correlation_id=correlation_id, causation_id=causation_id)
    return [OutboxRow(envelope.id, topic, payload.key(), value, headers)
            for topic in destinations(payload.topic, payload.party() or party)]


async def write(conn: asyncpg.Connection, rows: list[OutboxRow], schema: str, *,
                notify: bool = True) -> list[Staged]:
    """Stage rows in the caller's transaction. `notify`: wake the service's relays with a NOTIFY when it commits,
    for a writer outside the relay's process. One inside it tells its relay itself once it has committed
    (OutboxRelay.committed), which spares every other listening backend of the database the signal a NOTIFY
    sends them (docs/benchmark.md), and is handed the rows as staged, numbered, for that."""
    if not rows:
        return []
    columns = ([r.event_id for r in rows], [r.topic for r in rows], [r.key for r in rows], [r.value for r in rows],
               [r.headers for r in rows])
    insert = """INSERT INTO outbox (event_id, topic, key, value, headers)
                SELECT * FROM unnest($1::uuid[], $2::text[], $3::text[], $4::bytea[], $5::jsonb[])"""
    if notify:
        await conn.execute(f"WITH staged AS ({insert} RETURNING 1) SELECT pg_notify($6, ''), "
                           "(SELECT count(*) FROM staged)", *columns, notify_channel(schema))
        return []
    numbered = {(r["event_id"], r["topic"]): r["seq"]
                for r in await conn.fetch(f"{insert} RETURNING seq, event_id, topic", *columns)}
    return [Staged(numbered[row.event_id, row.topic], row) for row in rows]


def backlog_sql(outbox: str = "outbox") -> str:
    """A select list of an outbox's rows waiting (`backlog`) and the seconds since the oldest was staged
    (`oldest`, NULL when none waits): the oldest by `seq`, read along the primary key (min(created_at) scanned the
    whole outbox, which at saturation holds thousands of dead rows); rows are numbered as they are staged, so it
    is the oldest within a transaction's length."""
    return (f"(SELECT count(*) FROM {outbox}) AS backlog, "
            f"(SELECT extract(epoch FROM now() - created_at)::float8 FROM {outbox} ORDER BY seq LIMIT 1) AS oldest")


def notify_channel(schema: str) -> str:
    return f"oms_outbox_{schema}"


@lru_cache(maxsize=4096)
def _key_hash(key: bytes) -> int:
    return murmur2(key)


def _partition_by_key(key: bytes | None, all_partitions: list[int], available: list[int]) -> int:
    """Kafka's default partitioner (murmur2 of the key, as the Java client's), each key's hash computed once:
    aiokafka's murmur2 is pure Python (~5 µs a message), and an order's messages leave a service in a row."""
    if key is None:
        return _KAFKA_DEFAULT(key, all_partitions, available)
    return all_partitions[(_key_hash(key) & 0x7FFFFFFF) % len(all_partitions)]


_KAFKA_DEFAULT = DefaultPartitioner()


def make_producer(login: KafkaLogin, client_id: str) -> AIOKafkaProducer:
    return AIOKafkaProducer(
        **login.aiokafka(),
        client_id=client_id,
        partitioner=_partition_by_key,
        acks="all",
        enable_idempotence=True,
        compression_type="snappy",  # least CPU per batch of the codecs on a CPU-bound host: docs/benchmark.md
        linger_ms=0,  # the relay sends a claim's rows in one go; lingering only held the first back (benchmark.md)
        max_batch_size=256 * 1024,
    )


# What Kafka refuses about a message itself, whatever is retried: only these are set aside. Anything else — an
# outage, a lost producer sequence, a missing right — is the relay's problem, never the message's.
UNPUBLISHABLE = (MessageSizeTooLargeError, RecordTooLargeError, RecordListTooLargeError, InvalidTopicError)


class Claimed(NamedTuple):
    rows: int
    more: bool  # rows were left behind: a full batch, or slots with rows this claim could not hold


class OutboxRelay:
    """Publishes a service's outbox. The outbox is split in SLOTS slots by message key (a generated column); a
    batch publishes the rows of the slots it holds (advisory locks, taken per batch on slots that have rows, at
    most half of all slots, starting where the last batch stopped), so the relays of several instances publish
    at once, each a share of the keys, and a key's messages — always in one slot, published by one relay at a
    time, each batch acknowledged before the next — keep their order. A relay that finds rows in a slot another
    holds (it is publishing, and its claim may have been made before those rows committed) tells the others
    with a NOTIFY, so that the holder claims again; its own NOTIFY does not wake itself. A row Kafka refuses for
    good (too large, invalid) is set aside in `outbox_parked` with the reason, for ops to see, and never blocks
    the rows behind it; so is one for a party whose own topic does not exist yet, until it does
    (party_topics.py).

    Handing off. A claim costs a transaction per batch, and a Postgres process busy with it, on every hop of an
    order (docs/benchmark.md). A relay that knows it is the only one of its service publishes instead what its own
    process's units of work have just committed, as they hand it over (`committed`), without claiming, and
    deletes those rows in batches (every DELETE_SECONDS) once Kafka has acknowledged them. Knowing it is alone:
    every relay holds the PRESENCE advisory lock shared for as long as it runs, on its listening connection; a
    relay whose claim found nothing to publish takes it exclusive, which it gets only if no other relay holds it,
    publishes what was committed before (claims, until none is left), and from then on hands off. A relay that
    starts asks the one handing off to stop (a NOTIFY) and waits for the lock shared; the other publishes what it
    was handed, deletes it, and lets go of the exclusive lock: then both claim. The service applies nothing
    before its relay holds the lock (`joined`), so no other instance writes rows while one hands off, and a key's
    messages keep their order. Rows other processes stage (with a NOTIFY) are still claimed; a failure anywhere
    ends the run, and the next one starts by claiming what was left."""

    SLOTS = 16  # as the outbox's generated `slot` column (shared/db/migrations/0006_outbox_slots.sql)
    PRESENCE = -1  # the second key of the advisory lock every relay holds while it runs; slots are 0..SLOTS-1
    DELETE_SECONDS = 0.2  # how long rows published by hand-off may wait to be deleted, in one statement
    ALONE_CHECK_SECONDS = 1.0  # how often a claiming relay tries the lock exclusive, when the outbox is drained
    PUBLISH_SECONDS = 60.0  # a batch's longest wait for its acknowledgements (aiokafka's own time out sooner)

    def __init__(self, pool: asyncpg.Pool, new_producer: Callable[[], AIOKafkaProducer], schema: str,
                 topic_prefix: str, batch_size: int = 1000, idle_poll_seconds: float = 1.0):
        self.pool = pool
        self.new_producer = new_producer
        self.producer: AIOKafkaProducer | None = None
        self.schema = schema
        self.topic_prefix = topic_prefix
        self.batch_size = batch_size
        self.idle_poll_seconds = idle_poll_seconds
        self._wakeup = asyncio.Event()
        self.party_topics = PartyTopics(schema, topic_prefix)
        self._released_at = float("-inf")
        self._next_slot = 0
        self._token = uuid4().hex  # the payload of this relay's own NOTIFY, which it ignores
        self._lock_key = f"outbox:{schema}"
        self._joined = asyncio.Event()
        self.handing_off = False
        self._handed: list[Staged] = []  # committed by this process, to publish
        self._published: list[int] = []  # handed rows acknowledged by Kafka, to delete
        self._deleted_at = 0.0
        self._claimed_at = float("-inf")
        self._claim_due = False  # rows the hand-off does not carry may be waiting (a NOTIFY, the idle poll)
        self._joiner = False  # another relay has asked to share
        self._tried_alone_at = float("-inf")

    async def run(self) -> None:
        await run_forever("outbox-relay", self._relay)

    async def joined(self) -> None:
        """Returns once this relay holds its PRESENCE lock: from then on another relay hands off no more."""
        await self._joined.wait()

    def committed(self, rows: list[Staged]) -> None:
        """This process has committed `rows`: handed off if this relay is, else claimed at once."""
        if self.handing_off:
            self._handed += rows
        self._wakeup.set()

    def wake(self) -> None:
        """Publish now, without waiting for a NOTIFY: rows may be waiting."""
        self._claim_due = True
        self._wakeup.set()

    async def _relay(self) -> None:
        """Publish until cancelled, woken by this process's commits (`committed`), by the NOTIFY of a writer
        outside it and of another instance's relay (that found rows in slots this one held, or asks to share),
        and polling every `idle_poll_seconds` in case one was missed. A lost listening connection ends the run
        (run_forever starts another, listening again); it goes back to the pool on every exit, failures included,
        its locks let go. Each run has a producer of its own: after a failure the next run starts with a new one,
        because an idempotent producer whose sequence the broker lost (OutOfOrderSequenceNumber after a broker
        restart) never recovers."""
        self.producer = self.new_producer()
        await self.producer.start()
        lost = asyncio.Event()

        def listener_lost(_: object) -> None:
            lost.set()
            self._wakeup.set()

        try:
            async with self.pool.acquire(timeout=ACQUIRE_TIMEOUT) as listener:
                listener.add_termination_listener(listener_lost)
                await listener.add_listener(notify_channel(self.schema), self._notified)
                try:
                    await self._join(listener)
                    while not lost.is_set():
                        if not await self._step(listener):
                            await self._wait_for_work()
                        await self._release_held()
                    raise ConnectionError("the relay's LISTEN connection was lost: listening again")
                finally:
                    await self._leave(listener)
                    with suppress(Exception):  # a lost connection is already detached from the pool's proxy
                        listener.remove_termination_listener(listener_lost)
                        await listener.remove_listener(notify_channel(self.schema), self._notified)
        finally:
            with suppress(Exception):
                await self.producer.stop()

    async def _join(self, listener: asyncpg.Connection) -> None:
        """Take the PRESENCE lock shared; while a relay hands off (holds it exclusive), ask it to share, again
        every idle poll, the request queued meanwhile so that the other cannot take the lock back."""
        presence = (self._lock_key, self.PRESENCE)
        if not await listener.fetchval("SELECT pg_try_advisory_lock_shared(hashtext($1), $2)", *presence):
            locking = asyncio.ensure_future(
                listener.execute("SELECT pg_advisory_lock_shared(hashtext($1), $2)", *presence))
            try:
                while not locking.done():
                    async with self.pool.acquire(timeout=ACQUIRE_TIMEOUT) as conn:
                        await conn.execute("SELECT pg_notify($1, $2)", notify_channel(self.schema),
                                           f"join:{self._token}")
                    await asyncio.wait({locking}, timeout=self.idle_poll_seconds)
            finally:
                locking.cancel()
            locking.result()
        self._joined.set()
        self._tried_alone_at = float("-inf")
        log.info("outbox.relay_joined", schema=self.schema)

    async def _leave(self, listener: asyncpg.Connection) -> None:
        """What was handed and not published stays in the outbox, claimed by the next run (or another relay)."""
        self._joined.clear()
        self.handing_off, self._handed = False, []
        with suppress(Exception):
            await asyncio.wait_for(self._delete_published(force=True), ACQUIRE_TIMEOUT)
        try:  # the pool keeps sessions as they are: the locks go here, or with the session
            await listener.execute("SELECT pg_advisory_unlock_all()")
        except Exception:
            with suppress(Exception):  # a lost connection is already detached from the pool's proxy
                listener.terminate()

    async def _step(self, listener: asyncpg.Connection) -> bool:
        """One round; True if there may be more to publish at once."""
        if not self.handing_off:
            self._joiner = False
            claimed = await self._publish_round()
            if not claimed.more and claimed.rows < self.batch_size:
                await self._try_alone(listener)
            return claimed.rows >= self.batch_size
        if self._joiner:
            await self._share(listener)
            return True
        more = False
        if self._claim_due or self._loop_time() - self._claimed_at >= self.idle_poll_seconds:
            more = (await self._publish_round()).rows >= self.batch_size
        await self._publish_handed()
        await self._delete_published()
        return more

    async def _try_alone(self, listener: asyncpg.Connection) -> None:
        """Hand off from now on if no other relay runs: what was committed before is claimed first."""
        if self._loop_time() - self._tried_alone_at < self.ALONE_CHECK_SECONDS:
            return
        self._tried_alone_at = self._loop_time()
        if not await listener.fetchval("SELECT pg_try_advisory_lock(hashtext($1), $2)",
                                       self._lock_key, self.PRESENCE):
            return
        self.handing_off = True
        while (await self.publish_pending()).rows:
            pass
        log.info("outbox.handing_off", schema=self.schema)

    async def _share(self, listener: asyncpg.Connection) -> None:
        """Another relay has joined: publish what was handed, and claim from now on, as it will."""
        self.handing_off = False
        await self._publish_handed()
        await self._delete_published(force=True)
        await listener.execute("SELECT pg_advisory_unlock(hashtext($1), $2)", self._lock_key, self.PRESENCE)
        self._joiner = False
        log.info("outbox.sharing", schema=self.schema)

    async def _publish_round(self) -> Claimed:
        """A batch, and another if the first left rows behind (a full batch, or more slots had rows than it
        could hold); usually the first took them all. The last batch's figures: if it was full, there may be more
        at once; otherwise the relay waits: rows committed since have woken it."""
        self._claim_due, self._claimed_at = False, self._loop_time()
        claimed = await self.publish_pending()
        if claimed.more:
            claimed = await self.publish_pending()
        return claimed

    def _notified(self, _connection: object, _pid: int, _channel: str, payload: str) -> None:
        if payload == f"join:{self._token}" or payload == self._token:
            return
        if payload.startswith("join:"):
            self._joiner = True
        else:
            self._claim_due = True
        self._wakeup.set()

    async def _wait_for_work(self) -> None:
        timeout = self.DELETE_SECONDS if self._published else self.idle_poll_seconds
        # Not asyncio.wait_for: on Python 3.11 it drops a cancellation that comes with the wake (the relay of a
        # stopping service would go on); asyncio.timeout tells its own cancellation from another's.
        with suppress(TimeoutError):
            async with asyncio.timeout(timeout):
                await self._wakeup.wait()
        self._wakeup.clear()

    async def _publish_handed(self) -> None:
        rows, self._handed = sorted(self._handed), []
        if not rows:
            return
        now = datetime.now(UTC)
        records = [{"seq": seq, "event_id": row.event_id, "topic": row.topic, "key": row.key, "value": row.value,
                    "headers": row.headers, "created_at": now} for seq, row in rows]
        sendable, held = await self._sort_out(records)
        refused = await self._publish(sendable)
        parked = [(row, repr(error)[:1000]) for row, error in refused] + held
        if parked:
            async with self.pool.acquire(timeout=ACQUIRE_TIMEOUT) as conn, conn.transaction():
                await _park(conn, parked)
                await conn.execute("DELETE FROM outbox WHERE seq = ANY($1::bigint[])",
                                   [row["seq"] for row, _ in parked])
        unsent = {row["seq"] for row, _ in parked}
        self._published += [seq for seq, _ in rows if seq not in unsent]  # and the party copies skipped
        _count_published(self.schema, [r for r in sendable if r["seq"] not in unsent])

    async def _sort_out(self, records: list[dict]) -> tuple[list[dict], list[tuple[dict, str]]]:
        """As a claim's rows (party_topics.py): whether a party's topic holds messages back is in the database."""
        if any(only_per_party(r["topic"]) for r in records):
            async with self.pool.acquire(timeout=ACQUIRE_TIMEOUT) as conn:
                return await self.party_topics.sort_out(conn, self.producer, records)
        return await self.party_topics.sort_out(None, self.producer, records)

    async def _delete_published(self, force: bool = False) -> None:
        """Delete the rows handed off and published: in one statement, committed without waiting for the disk
        (as a claim's: a row brought back by a crash is published again, and skipped by its consumers)."""
        due = force or len(self._published) >= self.batch_size or \
            self._loop_time() - self._deleted_at >= self.DELETE_SECONDS
        if not self._published or not due:
            return
        async with self.pool.acquire(timeout=ACQUIRE_TIMEOUT) as conn:
            await conn.execute(
                """WITH deleted AS (DELETE FROM outbox WHERE seq = ANY($1::bigint[]) RETURNING 1)
                   SELECT set_config('synchronous_commit', 'off', true), (SELECT count(*) FROM deleted)""",
                self._published)
        self._published, self._deleted_at = [], self._loop_time()

    @staticmethod
    def _loop_time() -> float:
        return asyncio.get_running_loop().time()

    async def publish_pending(self) -> Claimed:
        """One batch: the oldest rows of the slots this relay could take, but those it was handed and has
        published already. Those it was handed and has not are taken too, and not handed any more: rows committed
        after them may be among those taken (committed, not yet handed over), and must not go first; rows put
        back in the outbox for a party whose topic now exists (party_topics.release) go before what follows them."""
        start, self._next_slot = self._next_slot, (self._next_slot + self.SLOTS // 2) % self.SLOTS
        async with self.pool.acquire(timeout=ACQUIRE_TIMEOUT) as conn, conn.transaction():
            # Deleted inside the transaction: if publishing fails, the rollback brings every row back. Its commit
            # does not wait for the WAL to reach the disk (synchronous_commit off, for this transaction alone):
            # a database crash that forgets the deletes brings the rows back to be published again, as a crash
            # before the commit does, and consumers skip them by event id. A Postgres process less busy per
            # round (docs/benchmark.md).
            claimed = await conn.fetch(
                """WITH RECURSIVE occupied AS (  -- the slots that have rows, from $3 on (a probe of the index each)
                     SELECT coalesce(array_agg(s.slot ORDER BY (s.slot - $3 + $2) % $2), ARRAY[]::int[]) AS slots
                     FROM generate_series(0, $2 - 1) AS s(slot)
                     WHERE EXISTS (SELECT FROM outbox o WHERE o.slot = s.slot AND o.seq <> ALL($5::bigint[]))
                   ), claim(i, held) AS (  -- tried in turn, one at a time, until half of all slots are held
                     SELECT 0, ARRAY[]::int[]
                     UNION ALL
                     SELECT i + 1, CASE WHEN pg_try_advisory_xact_lock(hashtext($4), slots[i + 1])
                                        THEN held || slots[i + 1] ELSE held END
                     FROM claim, occupied WHERE i < cardinality(slots) AND cardinality(held) < $2 / 2
                   ), last AS (
                     SELECT i AS tried, held FROM claim ORDER BY i DESC LIMIT 1
                   ), held AS (
                     SELECT unnest(held) AS slot FROM last
                   ), oldest AS (  -- each held slot's oldest rows, read along the index, then the oldest of all
                     SELECT picked.seq FROM held, LATERAL (
                       SELECT seq FROM outbox WHERE outbox.slot = held.slot AND seq <> ALL($5::bigint[])
                       ORDER BY seq LIMIT $1) AS picked
                     ORDER BY picked.seq LIMIT $1
                   ), deleted AS (  -- not locked before: a row another relay deleted since this statement's
                                    -- snapshot (it held the slot until it committed) is skipped by the DELETE,
                                    -- which returns only its own
                     DELETE FROM outbox WHERE seq IN (SELECT seq FROM oldest)
                     RETURNING seq, event_id, topic, key, value, headers, created_at
                   )  -- the claim's figures, with its rows or (none) alone
                   SELECT deleted.*, (SELECT count(*) FROM oldest) AS picked,
                          (SELECT cardinality(slots) FROM occupied) AS occupied,
                          (SELECT cardinality(held) FROM last) AS held,
                          (SELECT tried - cardinality(held) FROM last) AS contended
                   FROM (SELECT set_config('synchronous_commit', 'off', true)) AS figures  -- this transaction's
                     LEFT JOIN deleted ON true""",
                self.batch_size, self.SLOTS, start, self._lock_key, self._published)
            figures = claimed[0]
            if figures["contended"]:
                await conn.execute("SELECT pg_notify($1, $2)", notify_channel(self.schema), self._token)
            rows = sorted((r for r in claimed if r["seq"] is not None), key=lambda r: r["seq"])
            sendable, held = await self.party_topics.sort_out(conn, self.producer, rows)
            refused = await self._publish(sendable)
            if refused or held:
                await _park(conn, [(row, repr(error)[:1000]) for row, error in refused] + held)
        taken = {row["seq"] for row in rows}
        self._handed = [staged for staged in self._handed if staged.seq not in taken]
        unsent = {row["seq"] for row, _ in refused}
        _count_published(self.schema, [r for r in sendable if r["seq"] not in unsent])
        more = bool(rows) and (figures["picked"] >= self.batch_size or figures["occupied"] > figures["held"])
        return Claimed(len(rows), more)

    async def _release_held(self, every_seconds: float = 5.0) -> None:
        now = asyncio.get_running_loop().time()
        if now - self._released_at < every_seconds:
            return
        self._released_at = now
        async with self.pool.acquire(timeout=ACQUIRE_TIMEOUT) as conn, conn.transaction():
            if await self._locked(conn) and await release(conn, self.producer, self.party_topics):
                self.wake()

    async def _locked(self, conn: asyncpg.Connection) -> bool:
        return await conn.fetchval("SELECT pg_try_advisory_xact_lock(hashtext($1))", f"outbox:{self.schema}")

    async def _publish(self, rows: list[asyncpg.Record]) -> list[tuple[asyncpg.Record, BaseException]]:
        """Send in order, then await every acknowledgement. A row Kafka can never take is returned with the
        reason; any other failure raises (the whole batch comes back and is sent again; consumers deduplicate),
        as does a batch not acknowledged within PUBLISH_SECONDS: the run ends, the next has a new producer."""
        refused: list[tuple[asyncpg.Record, BaseException]] = []
        deliveries = []
        async with asyncio.timeout(self.PUBLISH_SECONDS):
            for row in rows:
                try:
                    deliveries.append((row, await self.producer.send(
                        self.topic_prefix + row["topic"], value=row["value"], key=row["key"].encode(),
                        headers=[(name, value.encode()) for name, value in row["headers"].items()])))
                except UNPUBLISHABLE as error:  # refused before sending, e.g. larger than max_request_size
                    refused.append((row, error))
            for row, delivery in deliveries:
                try:
                    await delivery
                except UNPUBLISHABLE as error:
                    refused.append((row, error))
        return refused


def _count_published(schema: str, rows: list) -> None:
    for topic, count in Counter(r["topic"] for r in rows).items():
        MESSAGES_PUBLISHED.labels(schema, topic).inc(count)


async def _park(conn: asyncpg.Connection, refused: list[tuple[asyncpg.Record, str]]) -> None:
    for row, reason in refused:
        log.error("outbox.message_parked", event_id=str(row["event_id"]), topic=row["topic"],
                  size=len(row["value"] or b""), error=reason[:500])
    await conn.execute(
        """INSERT INTO outbox_parked (event_id, topic, key, value, headers, created_at, reason)
           SELECT * FROM unnest($1::uuid[], $2::text[], $3::text[], $4::bytea[], $5::jsonb[], $6::timestamptz[],
                                $7::text[])
           ON CONFLICT (event_id, topic) DO NOTHING""",
        [r["event_id"] for r, _ in refused], [r["topic"] for r, _ in refused], [r["key"] for r, _ in refused],
        [r["value"] for r, _ in refused], [r["headers"] for r, _ in refused], [r["created_at"] for r, _ in refused],
        [reason for _, reason in refused],
    )
