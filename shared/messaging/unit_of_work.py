"""The one shape every handler has, and the unit of work it is handed.

A handler is `async def handler(uow: UnitOfWork, batch: list[Message[P]]) -> None`: a run of consecutive
messages of the types it is registered for (in offset order), already parsed and validated into their
contracts, and one Postgres transaction that holds the inbox claims of those messages, the state the handler
changes, and the messages it emits (staged in the outbox, published by the relay after commit). Handlers never
commit or acquire connections; background workers (saga deadlines, inbox retention) are handed a `Begin` that
opens a unit of work of their own.
"""

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass, field
from functools import partial
from typing import Generic, TypeVar

import asyncpg
from aiokafka.structs import ConsumerRecord
from opentelemetry import context as otel_context
from opentelemetry.context import Context

from shared.contracts import Contract
from shared.contracts.base import Attributes
from shared.contracts.ops import DeadLetter
from shared.db import ACQUIRE_TIMEOUT
from shared.settings import Settings

from . import outbox
from .monitor import count_committed
from .outbox import OutboxRelay, OutboxRow
from .tracing import headers_of, trace_id_of

P = TypeVar("P", bound=Contract)


@dataclass(frozen=True)
class Message(Generic[P]):
    """A consumed message: its contract, the envelope it came in (ids for dedup, correlation, causation), the
    trace context of its span (what answers to it carry), and the outside party whose own topic it came on, the
    only one the broker lets write there (None for a topic of our own)."""

    payload: P
    envelope: Attributes  # what it came in, but its data: that is `payload`
    trace: Context
    sender: str | None = None

    @property
    def correlation_id(self) -> str:
        return self.envelope.correlationid

    @property
    def trace_id(self) -> str | None:
        return trace_id_of(self.trace)


@dataclass
class UnitOfWork:
    conn: asyncpg.Connection
    service: str
    writes: frozenset[str]  # the topics this service writes (dead letters included); emitting elsewhere is a bug
    settings: Settings  # the service's configuration, handed in rather than read from the environment
    staged: list[OutboxRow] = field(default_factory=list)
    dead_letters: list[tuple[OutboxRow, DeadLetter, ConsumerRecord]] = field(default_factory=list)
    refused: list[tuple[Message, str, str]] = field(default_factory=list)
    emitted: list[Contract] = field(default_factory=list)  # the payloads of `staged`, for the metrics
    # Metrics to count once the transaction commits, so a batch retried is counted once: those staged since the
    # last flush (undone with a savepoint), and those flushed.
    after_commit: list[Callable[[], None]] = field(default_factory=list)
    flushed: list[Callable[[], None]] = field(default_factory=list)
    # The relay of this process, handed the rows once they are committed; without one (a unit of work outside
    # the service's process), the commit wakes the service's relays with a NOTIFY.
    relay: OutboxRelay | None = None

    @property
    def source(self) -> str:
        return f"oms/{self.service}"

    def emit(self, payload: Contract, *, correlation_id: str, causation_id: str | None = None,
             trace: Context | None = None, party: str | None = None) -> OutboxRow:
        """Stage a message, published after the transaction commits, in the given trace (or the current one).
        `party`: the outside party it is for, on a topic read per party, if the message does not name it."""
        if payload.topic not in self.writes:
            raise ValueError(f"{self.service} does not publish to {payload.topic} ({payload.message_type})")
        rows = outbox.stage(payload, source=self.source, correlation_id=correlation_id, causation_id=causation_id,
                            headers=headers_of(otel_context.get_current() if trace is None else trace), party=party)
        self.staged += rows
        self.emitted.append(payload)
        return rows[0]

    def forget(self, topic: str, key: str) -> None:
        """Stage a tombstone for the key on a compacted topic this service writes."""
        if topic not in self.writes:
            raise ValueError(f"{self.service} does not publish to {topic}")
        self.staged.append(outbox.tombstone(topic, key, headers_of(otel_context.get_current())))

    def reply(self, payload: Contract, to: Message, *, correlation_id: str | None = None) -> OutboxRow:
        """Stage a message caused by `to`: it carries `to`'s trace, and `to`'s correlation id unless the flow it
        belongs to has another (a saga's own)."""
        return self.emit(payload, correlation_id=correlation_id or to.correlation_id, causation_id=str(to.envelope.id),
                         trace=to.trace)

    def refuse(self, message: Message, reason: str, detail: str) -> None:
        """The handler cannot apply this message (it names an order or fulfilment order there is no trace of, or
        its sender speaks for another party): it is dead-lettered with this reason code, the rest of the batch
        applied. The handler must leave it without effect; a message that is refused may be replayed once its
        cause is gone."""
        self.refused.append((message, reason, detail))

    def dead_letter(self, letter: DeadLetter, record: ConsumerRecord, correlation_id: str,
                    causation_id: str | None, trace: Context) -> None:
        [row] = outbox.stage(letter, source=self.source, correlation_id=correlation_id, causation_id=causation_id,
                             headers=headers_of(trace))
        self.dead_letters.append((row, letter, record))

    async def claim(self, keys: list[str]) -> set[str]:
        """Record message keys in the inbox; returns those not seen before (the others are redeliveries)."""
        rows = await self.conn.fetch(
            "INSERT INTO inbox (message_key) SELECT DISTINCT unnest($1::text[]) "
            "ON CONFLICT DO NOTHING RETURNING message_key", keys)
        return {r["message_key"] for r in rows}

    async def flush(self) -> None:
        """Write what was staged: the outbox rows, and each dead letter with all its original bytes."""
        rows = self.staged + [row for row, _, _ in self.dead_letters]
        written = await outbox.write(self.conn, rows, self.service, notify=self.relay is None)
        if self.dead_letters:
            await _keep_dead_letters(self.conn, self.dead_letters)
        self.staged, self.dead_letters = [], []
        self.flushed += [partial(count_committed, self.emitted), *self.after_commit]
        if written and self.relay is not None:
            self.flushed.append(partial(self.relay.committed, written))
        self.emitted, self.after_commit = [], []

    def discard_staged(self, flushed_before: int | None = None) -> None:
        """What was staged since the last flush, undone (its savepoint rolled back); and, if the savepoint's
        work was flushed, what was flushed in it (`flushed_before`: how much had been before it)."""
        self.staged, self.dead_letters, self.refused, self.emitted, self.after_commit = [], [], [], [], []
        if flushed_before is not None:
            del self.flushed[flushed_before:]

    def committed(self) -> None:
        """Called once the transaction has committed: only then does what it did count."""
        for count in self.flushed:
            count()
        self.flushed = []


Handler = Callable[[UnitOfWork, list[Message]], Awaitable[None]]
Begin = Callable[[], AbstractAsyncContextManager[UnitOfWork]]


def units_of_work(pool: asyncpg.Pool, service: str, writes: frozenset[str], settings: Settings,
                  relay: OutboxRelay | None = None) -> Begin:
    """How work that no message started (deadlines, retention) opens a unit of work: a transaction of its own
    that writes what was staged and commits on exit (once the process's relay has joined: OutboxRelay)."""
    @asynccontextmanager
    async def begin() -> AsyncIterator[UnitOfWork]:
        if relay is not None:
            await relay.joined()
        async with pool.acquire(timeout=ACQUIRE_TIMEOUT) as conn:
            async with conn.transaction():
                uow = UnitOfWork(conn, service, writes, settings, relay=relay)
                yield uow
                await uow.flush()
            uow.committed()  # before the connection goes back: the relay is handed the rows in commit order

    return begin


async def _keep_dead_letters(conn: asyncpg.Connection,
                             letters: list[tuple[OutboxRow, DeadLetter, ConsumerRecord]]) -> None:
    await conn.execute(
        """INSERT INTO dead_letters (event_id, consumer, source_topic, source_partition, source_offset, reason,
                                     detail, original_key, original_value, failed_at)
           SELECT * FROM unnest($1::uuid[], $2::text[], $3::text[], $4::int[], $5::bigint[], $6::text[],
                                $7::text[], $8::bytea[], $9::bytea[], $10::timestamptz[])
           ON CONFLICT DO NOTHING""",
        [row.event_id for row, _, _ in letters], [x.consumer for _, x, _ in letters],
        [x.source_topic for _, x, _ in letters], [x.source_partition for _, x, _ in letters],
        [x.source_offset for _, x, _ in letters], [x.reason for _, x, _ in letters],
        [x.detail for _, x, _ in letters], [r.key for _, _, r in letters], [r.value or b"" for _, _, r in letters],
        [x.failed_at for _, x, _ in letters],
    )
