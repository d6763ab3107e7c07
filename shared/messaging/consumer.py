"""The consumer runtime: turns a batch of Kafka records into handler calls with exactly-once effect.

For each batch, in one Postgres transaction:
  1. parse every record; one that is not a valid envelope or payload becomes a dead letter (original bytes + reason);
  2. claim the inbox keys; records already processed are skipped (redelivery does nothing);
  3. run each handler;
  4. write the staged events and dead letters to the outbox, commit.
Only then does `process` return, and only then are the Kafka offsets committed; `process` never returns
before every record has its effect or its dead letter durably written. A transient error (database or broker
outage, deadlock, timeout) rolls the whole batch back and retries it with backoff, so nothing is skipped. Any
other failure — a handler's, or one outside the handlers such as a staged message Postgres refuses — rolls the
batch back too; the batch is then run again message by message, each in its own savepoint with its own
outbox rows, so that only the failing message is undone and dead-lettered. Savepoints cost two round trips
per message, which is why the common case runs without them.
"""

import base64
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import asyncpg
import structlog
from aiokafka.structs import ConsumerRecord
from pydantic import ValidationError

from shared.contracts import REGISTRY, Contract, Envelope
from shared.contracts.base import printable, refuse_nul_characters
from shared.contracts.ops import MAX_ORIGINAL_BYTES, DeadLetter
from shared.db import ACQUIRE_TIMEOUT
from shared.logging import get_logger

from . import outbox
from .monitor import ConsumerMonitor
from .outbox import OutboxRow
from .retry import Backoff, is_transient

log = get_logger(__name__)

MAX_DETAIL = 2000


@dataclass
class MessageContext:
    """What a handler gets besides its payload: the transaction's connection and a way to emit messages."""

    conn: asyncpg.Connection
    envelope: Envelope
    source: str
    payload: Any = None
    record: ConsumerRecord | None = None
    staged: list[OutboxRow] = field(default_factory=list)

    @property
    def correlation_id(self) -> str:
        return self.envelope.correlationid

    def emit(self, payload: Contract, correlation_id: str | None = None) -> OutboxRow:
        """Stage a message; it carries this message's correlation id unless the flow it belongs to has another."""
        row = outbox.stage(payload, source=self.source, correlation_id=correlation_id or self.correlation_id,
                           causation_id=str(self.envelope.id))
        self.staged.append(row)
        return row


Handler = Callable[[MessageContext, Any], Awaitable[None]]
BatchHandler = Callable[[asyncpg.Connection, list[MessageContext]], Awaitable[None]]
InvalidPayloadHook = Callable[[Envelope, ValidationError], list[Contract]]


def handles_batches(handler: BatchHandler) -> BatchHandler:
    """Mark a handler that takes a run of consecutive messages (in offset order) at once, so that it can read
    and write the state of the whole run in a few statements instead of a few per message."""
    handler.handles_batches = True
    return handler


@dataclass(frozen=True)
class Subscription:
    """The message types one topic delivers to a service, and the handler of each. Other types are skipped."""

    topic: str
    handlers: dict[type[Contract], Handler | BatchHandler]
    on_invalid_payload: InvalidPayloadHook | None = None


@dataclass
class _Parsed:
    record: ConsumerRecord
    inbox_key: str
    envelope: Envelope | None = None
    payload: Contract | None = None
    dead_letter: tuple[str, str] | None = None  # (reason, detail)
    validation_error: ValidationError | None = None
    duplicate: bool = False


class InvalidMessage(Exception):
    def __init__(self, reason: str, detail: str):
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


class Consumer:
    def __init__(self, pool: asyncpg.Pool, *, service: str, schema: str, group: str,
                 after_commit: Callable[[], None] = lambda: None, monitor: ConsumerMonitor | None = None):
        self.pool = pool
        self.monitor = monitor or ConsumerMonitor(group)
        self.after_commit = after_commit
        self.service = service
        self.source = f"oms/{service}"
        self.schema = schema
        self.group = group

    async def process(self, subscription: Subscription, records: list[ConsumerRecord]) -> None:
        parsed = [self._parse(subscription, r) for r in records]
        backoff = Backoff()
        isolate = False
        while True:
            try:
                await self._apply(subscription, parsed, isolate)
                self.monitor.applied(parsed)
                self.after_commit()
                return
            except Exception as error:
                self.monitor.failing(error)
                if is_transient(error):
                    log.warning("consumer.transient_failure", group=self.group, error=repr(error), batch=len(parsed))
                elif not isolate:
                    isolate = True  # find the culprit: message by message, each in its own savepoint
                    continue
                else:  # not even its dead letter could be written: never skip it, keep trying and say so
                    log.error("consumer.batch_stuck", group=self.group, error=repr(error)[:1000], batch=len(parsed))
                await backoff.sleep()

    def _parse(self, subscription: Subscription, record: ConsumerRecord) -> _Parsed:
        position_key = f"{record.topic}/{record.partition}/{record.offset}"
        try:
            envelope = _envelope(record.value)
        except InvalidMessage as bad:
            return _Parsed(record, position_key, dead_letter=(bad.reason, bad.detail))
        parsed = _Parsed(record, str(envelope.id), envelope)
        model = REGISTRY.get(envelope.type)
        if model is None:
            parsed.dead_letter = ("UNKNOWN_TYPE", f"no contract named {printable(envelope.type, 200)!r}")
        elif model.topic != subscription.topic:
            parsed.dead_letter = ("WRONG_TOPIC", f"{envelope.type} belongs on {model.topic}")
        elif model in subscription.handlers:
            try:
                parsed.payload = model.model_validate(envelope.data)
                if b"\\u0000" in record.value:  # cheap test first: NUL is legal JSON, but no field may hold it
                    refuse_nul_characters(model, envelope.data)
            except ValidationError as error:
                parsed.dead_letter = ("INVALID_PAYLOAD", _describe(error))
                parsed.validation_error = error
        return parsed

    async def _apply(self, subscription: Subscription, batch: list[_Parsed], isolate: bool) -> None:
        async with self.pool.acquire(timeout=ACQUIRE_TIMEOUT) as conn, conn.transaction():
            fresh = await _claim(conn, [p.inbox_key for p in batch])
            todo: list[_Parsed] = []
            for item in batch:
                if item.inbox_key in fresh:
                    fresh.discard(item.inbox_key)  # the same message twice in one batch is applied once
                    todo.append(item)
                else:
                    item.duplicate = True
            if isolate:
                for item in todo:
                    await self._apply_alone(conn, subscription, item)
            else:
                await self._apply_together(conn, subscription, todo)

    async def _apply_together(self, conn: asyncpg.Connection, subscription: Subscription,
                              batch: list[_Parsed]) -> None:
        letters: list[_Letter] = []
        rows: list[OutboxRow] = []
        run: list[MessageContext] = []
        for item in batch:
            if item.dead_letter is not None:
                letters.append(self._dead_letter(subscription, item, *item.dead_letter))
            elif item.payload is not None:  # otherwise a type this service does not consume from this topic
                ctx = MessageContext(conn, item.envelope, self.source, item.payload, item.record)
                if run and _handler(subscription, run[0]) is not _handler(subscription, ctx):
                    rows.extend(await self._run(subscription, run))
                    run = []
                run.append(ctx)
        if run:
            rows.extend(await self._run(subscription, run))
        await _write(conn, rows, letters, self.schema)

    async def _run(self, subscription: Subscription, run: list[MessageContext]) -> list[OutboxRow]:
        """Handle consecutive messages that share a handler, all at once."""
        handler = _handler(subscription, run[0])
        if getattr(handler, "handles_batches", False):
            await handler(run[0].conn, run)
        else:
            for ctx in run:
                with _bound(ctx.envelope):
                    await handler(ctx, ctx.payload)
        return [row for ctx in run for row in ctx.staged]

    async def _apply_alone(self, conn: asyncpg.Connection, subscription: Subscription, item: _Parsed) -> None:
        """One message in a savepoint with its own outbox rows; if anything about it fails, only its dead
        letter is written (without the answers it would have sent, which may be what failed)."""
        with _bound(item.envelope):
            try:
                async with conn.transaction():
                    await self._apply_together(conn, subscription, [item])
                return
            except Exception as error:
                if is_transient(error):
                    raise
                log.exception("consumer.message_failed")
                reason = item.dead_letter or ("HANDLER_ERROR", repr(error))
            async with conn.transaction():
                await _write(conn, [], [self._dead_letter(subscription, item, *reason, answer=False)], self.schema)

    def _dead_letter(self, subscription: Subscription, item: _Parsed, reason: str, detail: str, *,
                     answer: bool = True) -> "_Letter":
        record = item.record
        detail = printable(detail, MAX_DETAIL)
        log.warning("consumer.dead_letter", topic=record.topic, partition=record.partition, offset=record.offset,
                    reason=reason, detail=detail[:500])
        value = record.value or b""
        letter = DeadLetter(
            consumer=self.group,
            source_topic=record.topic,
            source_partition=record.partition,
            source_offset=record.offset,
            reason=reason,
            detail=detail,
            original_key_b64=base64.b64encode(record.key[:MAX_ORIGINAL_BYTES]).decode() if record.key is not None else None,
            original_value_b64=base64.b64encode(value[:MAX_ORIGINAL_BYTES]).decode(),
            original_size=len(value),
            original_truncated=len(value) > MAX_ORIGINAL_BYTES,
            failed_at=datetime.now(UTC),
        )
        # The ids of a hostile envelope are not echoed: the letter is correlated by the record's position.
        trusted = item.envelope is not None and item.dead_letter is None
        correlation = item.envelope.correlationid if trusted else letter.key()
        causation = str(item.envelope.id) if item.envelope else None
        rows = [outbox.stage(letter, source=self.source, correlation_id=correlation, causation_id=causation)]
        if answer and subscription.on_invalid_payload and item.envelope and item.validation_error:
            rows += [
                outbox.stage(answer, source=self.source, correlation_id=correlation, causation_id=causation)
                for answer in subscription.on_invalid_payload(item.envelope, item.validation_error)
            ]
        self.monitor.dead_lettered(reason)
        return _Letter(letter, record, rows)


@dataclass(frozen=True)
class _Letter:
    letter: DeadLetter
    record: ConsumerRecord
    rows: list[OutboxRow]


async def _write(conn: asyncpg.Connection, rows: list[OutboxRow], letters: list[_Letter], schema: str) -> None:
    """Stage the messages, and keep each dead letter (with all its original bytes) in the service's schema."""
    await outbox.write(conn, rows + [row for letter in letters for row in letter.rows], schema)
    if letters:
        await conn.execute(
            """INSERT INTO dead_letters (event_id, consumer, source_topic, source_partition, source_offset, reason,
                                         detail, original_key, original_value, failed_at)
               SELECT * FROM unnest($1::uuid[], $2::text[], $3::text[], $4::int[], $5::bigint[], $6::text[],
                                    $7::text[], $8::bytea[], $9::bytea[], $10::timestamptz[])
               ON CONFLICT DO NOTHING""",
            [x.rows[0].event_id for x in letters], [x.letter.consumer for x in letters],
            [x.letter.source_topic for x in letters], [x.letter.source_partition for x in letters],
            [x.letter.source_offset for x in letters], [x.letter.reason for x in letters],
            [x.letter.detail for x in letters], [x.record.key for x in letters],
            [x.record.value or b"" for x in letters], [x.letter.failed_at for x in letters],
        )




def _handler(subscription: Subscription, ctx: MessageContext) -> Handler | BatchHandler:
    return subscription.handlers[type(ctx.payload)]


@contextmanager
def _bound(envelope: Envelope | None) -> Iterator[None]:
    """Log lines written while handling a message carry its ids."""
    if envelope is None:
        yield
        return
    with structlog.contextvars.bound_contextvars(event_id=str(envelope.id), correlation_id=envelope.correlationid,
                                                 order_id=envelope.subject, message_type=envelope.type):
        yield


def _envelope(value: bytes | None) -> Envelope:
    if not value:
        raise InvalidMessage("EMPTY", "the message has no value")
    try:
        return Envelope.model_validate_json(value)  # parses and validates in one pass (pydantic-core)
    except ValidationError as error:
        if any(e["type"] == "json_invalid" for e in error.errors()):
            raise InvalidMessage("NOT_JSON", _describe(error)) from None
        raise InvalidMessage("INVALID_ENVELOPE", _describe(error)) from None


def _describe(error: ValidationError) -> str:
    return printable("; ".join(f"{printable('.'.join(map(str, e['loc'])), 200) or '(root)'}: {e['msg']}"
                               for e in error.errors()[:20]), MAX_DETAIL)


async def _claim(conn: asyncpg.Connection, keys: list[str]) -> set[str]:
    rows = await conn.fetch(
        "INSERT INTO inbox (message_key) SELECT DISTINCT unnest($1::text[]) ON CONFLICT DO NOTHING RETURNING message_key",
        keys,
    )
    return {r["message_key"] for r in rows}
