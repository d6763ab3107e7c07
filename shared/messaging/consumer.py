"""The consumer runtime: turns a batch of Kafka records into handler calls with exactly-once effect.

For each batch, in one Postgres transaction:
  1. parse every record; one that is not a valid envelope or payload becomes a dead letter (original bytes + reason);
  2. claim the inbox keys; records already processed are skipped (redelivery does nothing);
  3. run each handler;
  4. write the staged events and dead letters to the outbox, commit.
Only then does the caller commit the Kafka offsets. A transient error (database or broker outage, deadlock)
rolls the whole batch back and retries it with backoff, so nothing is skipped. A handler that fails for any
other reason rolls the batch back too; the batch is then run again with a savepoint per message, so that
only the failing message is undone and dead-lettered. Savepoints cost two round trips per message, which is
why the common case runs without them.
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
from shared.contracts.ops import DeadLetter
from shared.logging import get_logger

from . import outbox
from .outbox import OutboxRow
from .retry import Backoff, is_transient

log = get_logger(__name__)


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


class _HandlerFailed(Exception):
    """A handler raised a non-transient error in a batch run without savepoints."""


class InvalidMessage(Exception):
    def __init__(self, reason: str, detail: str):
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


class Consumer:
    def __init__(self, pool: asyncpg.Pool, *, service: str, schema: str, group: str,
                 after_commit: Callable[[], None] = lambda: None):
        self.pool = pool
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
                self.after_commit()
                return
            except _HandlerFailed:
                isolate = True
            except Exception as error:
                if not is_transient(error):
                    raise
                log.warning("consumer.transient_failure", group=self.group, error=repr(error), batch=len(parsed))
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
            parsed.dead_letter = ("UNKNOWN_TYPE", f"no contract named {envelope.type!r}")
        elif model in subscription.handlers:
            try:
                parsed.payload = model.model_validate(envelope.data)
            except ValidationError as error:
                parsed.dead_letter = ("INVALID_PAYLOAD", _describe(error))
                parsed.validation_error = error
        return parsed

    async def _apply(self, subscription: Subscription, batch: list[_Parsed], isolate: bool) -> None:
        async with self.pool.acquire() as conn, conn.transaction():
            fresh = await _claim(conn, [p.inbox_key for p in batch])
            rows: list[OutboxRow] = []
            run: list[MessageContext] = []
            for item in batch:
                if item.inbox_key not in fresh:
                    continue
                fresh.discard(item.inbox_key)  # the same message twice in one batch is applied once
                if item.dead_letter is not None:
                    rows.extend(self._dead_letter(subscription, item, *item.dead_letter))
                elif item.payload is not None:  # otherwise a type this service does not consume from this topic
                    ctx = MessageContext(conn, item.envelope, self.source, item.payload, item.record)
                    if run and _handler(subscription, run[0]) is not _handler(subscription, ctx):
                        rows.extend(await self._run(subscription, run, isolate))
                        run = []
                    run.append(ctx)
            if run:
                rows.extend(await self._run(subscription, run, isolate))
            await outbox.write(conn, rows, self.schema)

    async def _run(self, subscription: Subscription, run: list[MessageContext], isolate: bool) -> list[OutboxRow]:
        """Handle consecutive messages that share a handler: all at once, or one by one in savepoints."""
        handler = _handler(subscription, run[0])
        batched = getattr(handler, "handles_batches", False)
        if not isolate:
            try:
                if batched:
                    await handler(run[0].conn, run)
                else:
                    for ctx in run:
                        with _bound(ctx.envelope):
                            await handler(ctx, ctx.payload)
            except Exception as error:
                if is_transient(error):
                    raise
                raise _HandlerFailed from error
            return [row for ctx in run for row in ctx.staged]
        rows: list[OutboxRow] = []
        for ctx in run:
            with _bound(ctx.envelope):
                try:
                    async with ctx.conn.transaction():  # savepoint: a failing handler undoes only its own message
                        await (handler(ctx.conn, [ctx]) if batched else handler(ctx, ctx.payload))
                    rows.extend(ctx.staged)
                except Exception as error:
                    if is_transient(error):
                        raise
                    log.exception("consumer.handler_failed")
                    item = _Parsed(ctx.record, str(ctx.envelope.id), ctx.envelope)
                    rows.extend(self._dead_letter(subscription, item, "HANDLER_ERROR", repr(error)))
        return rows

    def _dead_letter(self, subscription: Subscription, item: _Parsed, reason: str, detail: str) -> list[OutboxRow]:
        record = item.record
        log.warning("consumer.dead_letter", topic=record.topic, partition=record.partition, offset=record.offset,
                    reason=reason, detail=detail[:500])
        letter = DeadLetter(
            consumer=self.group,
            source_topic=record.topic,
            source_partition=record.partition,
            source_offset=record.offset,
            reason=reason,
            detail=detail,
            original_key_b64=base64.b64encode(record.key).decode() if record.key is not None else None,
            original_value_b64=base64.b64encode(record.value or b"").decode(),
            failed_at=datetime.now(UTC),
        )
        correlation = item.envelope.correlationid if item.envelope else item.inbox_key
        causation = str(item.envelope.id) if item.envelope else None
        rows = [outbox.stage(letter, source=self.source, correlation_id=correlation, causation_id=causation)]
        if subscription.on_invalid_payload and item.envelope and item.validation_error:
            rows += [
                outbox.stage(answer, source=self.source, correlation_id=correlation, causation_id=causation)
                for answer in subscription.on_invalid_payload(item.envelope, item.validation_error)
            ]
        return rows


def _handler(subscription: Subscription, ctx: MessageContext) -> Handler | BatchHandler:
    return subscription.handlers[type(ctx.payload)]


@contextmanager
def _bound(envelope: Envelope) -> Iterator[None]:
    """Log lines written while handling a message carry its ids."""
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
    return "; ".join(f"{'.'.join(map(str, e['loc'])) or '(root)'}: {e['msg']}" for e in error.errors())


async def _claim(conn: asyncpg.Connection, keys: list[str]) -> set[str]:
    rows = await conn.fetch(
        "INSERT INTO inbox (message_key) SELECT DISTINCT unnest($1::text[]) ON CONFLICT DO NOTHING RETURNING message_key",
        keys,
    )
    return {r["message_key"] for r in rows}
