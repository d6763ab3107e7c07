"""The consumer runtime: turns a batch of Kafka records into handler calls with exactly-once effect.

For each batch, in one unit of work (one Postgres transaction):
  1. parse every record into its contract; one that is not a valid envelope or payload, of an unknown type or
     on the wrong topic becomes a dead letter (original bytes + reason);
  2. claim the inbox keys; records already processed are skipped (redelivery does nothing). A record of a type
     another service consumes from this topic is skipped without a claim: it has no effect to deduplicate, so a
     batch of nothing else needs no transaction at all;
  3. hand each run of consecutive messages that share a handler to that handler, typed;
  4. write the staged events and dead letters, commit.
Only then does `process` return, and only then are the Kafka offsets committed; `process` never returns
before every record has its effect or its dead letter durably written. A transient error (database or broker
outage, deadlock, timeout) rolls the whole batch back and retries it with backoff, so nothing is skipped. Any
other failure — a handler's, or one outside the handlers such as a staged message Postgres refuses — rolls the
batch back too; the batch is then run again message by message, each in its own savepoint with its own
outbox rows, so that only the failing message is undone and dead-lettered. Savepoints cost two round trips
per message, which is why the common case runs without them.

Each record gets a span (tracing.py), child of the trace context in its headers, that lasts until the record's
effect is committed; answers to the record carry that span's context, dead letters included.
"""

import base64
import re
import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime

import asyncpg
import structlog
from aiokafka.structs import ConsumerRecord
from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.trace import Span, Status, StatusCode
from pydantic import BaseModel, ValidationError

from shared.contracts import REGISTRY, Contract, Envelope
from shared.contracts.base import Attributes, printable, refuse_nul_characters, typed_envelope
from shared.contracts.ops import MAX_ORIGINAL_BYTES, DeadLetter
from shared.db import ACQUIRE_TIMEOUT
from shared.logging import get_logger
from shared.settings import Settings

from .monitor import HANDLER_DURATION, ConsumerMonitor
from .outbox import OutboxRelay
from .retry import Backoff, is_transient
from .tracing import consuming, recording, trace_id_of
from .unit_of_work import Handler, Message, UnitOfWork

log = get_logger(__name__)

MAX_DETAIL = 2000

InvalidPayloadHook = Callable[[Envelope, ValidationError], list[Contract]]
# How much later a subscription off the order's way to fulfilment reads, for larger batches (batch_wait_ms).
OFF_THE_WAY_WAIT_MS = 200
# How much later the read side reads (order views and histories, customer messages): a second staler at most,
# for a fifth of its CPU per order (docs/benchmark.md).
READ_SIDE_WAIT_MS = 1000


@dataclass(frozen=True)
class Subscription:
    """The message types one topic delivers to a service, and the handler of each. Other types that belong on
    this topic are skipped (another service's business); types that belong elsewhere are dead-lettered.

    `per_party`: outside parties (channels, locations) each write a topic of their own, `<topic>.<party>`, which
    only their principal may write (ops/principals.py); the service reads them all, and each message's `sender`
    is the party its topic names (None on the shared topic, which only ops may write)."""

    topic: str
    handlers: dict[type[Contract], Handler]
    on_invalid_payload: InvalidPayloadHook | None = None
    per_party: bool = False
    batch_wait_ms: int | None = None
    """Off the order's way to fulfilment (a read side, customer messages, counts): the broker holds each fetch
    until this long has passed or a megabyte has come, so the service reads larger batches, at a fraction of the
    CPU per message, and is up to this much later. None: each record as soon as it comes."""
    skipped_when: dict[type[Contract], str] = field(default_factory=dict)
    """A handled type whose messages are skipped, without a claim, when this boolean field of their payload is
    true: the service has asked for the answer to come from elsewhere. They are read in full all the same (the
    service may be their only reader), so a malformed one is dead-lettered as usual."""

    locks_first: Callable[[UnitOfWork, list[Message]], Awaitable[None]] | None = None
    """Takes the locks the batch's handlers will take, in one order, before any of them runs. Handlers run one
    after another (and may go message by message), each locking what it touches as it comes to it: a batch
    could hold one order and wait for another that a concurrent batch holds while waiting for the first."""

    def awaits_elsewhere(self, payload: Contract) -> bool:
        flag = self.skipped_when.get(type(payload))
        return flag is not None and getattr(payload, flag) is True

    def sender(self, record_topic: str, topic_prefix: str) -> str | None:
        party_topic_start = f"{topic_prefix}{self.topic}."
        return record_topic.removeprefix(party_topic_start) if record_topic.startswith(party_topic_start) else None


@dataclass
class _Parsed:
    record: ConsumerRecord
    inbox_key: str | None  # None: another service's message, skipped without a claim
    envelope: Attributes | None = None  # an Envelope unless read by _decoded
    message: Message | None = None
    dead_letter: tuple[str, str] | None = None  # (reason, detail)
    validation_error: ValidationError | None = None
    duplicate: bool = False
    trace: Context = field(default_factory=Context)  # holds the record's span

    @property
    def payload(self) -> Contract | None:
        return self.message.payload if self.message else None

    @property
    def outcome(self) -> str:
        return ("duplicate" if self.duplicate else "dead_letter" if self.dead_letter
                else "applied" if self.payload is not None else "skipped")

    @property
    def span(self) -> Span:
        return trace.get_current_span(self.trace)

    def finish(self, done: bool) -> None:
        """End the record's span; one whose batch was interrupted (shutdown) ends without an outcome."""
        if done:
            self.span.set_attribute("oms.outcome", self.outcome)
        self.span.end()


class InvalidMessage(Exception):
    def __init__(self, reason: str, detail: str):
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


class Consumer:
    def __init__(self, pool: asyncpg.Pool, *, service: str, writes: frozenset[str], group: str,
                 settings: Settings, monitor: ConsumerMonitor | None = None,
                 relay: OutboxRelay | None = None):
        self.pool = pool
        self.relay = relay  # the relay of this process (UnitOfWork.relay)
        self.settings = settings
        self.monitor = monitor or ConsumerMonitor(service, group)
        self.service = service
        self.writes = writes
        self.group = group

    async def process(self, subscription: Subscription, records: list[ConsumerRecord]) -> None:
        parsed = [self._parse(subscription, r) for r in records]
        done = False
        try:
            await self._apply_until_done(subscription, parsed)
            done = True
        finally:
            for item in parsed:
                item.finish(done)

    async def _apply_until_done(self, subscription: Subscription, parsed: list[_Parsed]) -> None:
        backoff = Backoff()
        isolate = False
        while True:
            try:
                await self._apply(subscription, parsed, isolate)
                self.monitor.applied(parsed)
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
        """Read the record, then open its span (knowing what the record is) and hand its message that span."""
        parsed, payload = self._read(subscription, record)
        if payload is None and parsed.dead_letter is None and not recording():
            return parsed  # skipped, without effect, answer or log line: no span to carry (~6 µs a record)
        span = consuming(record, self.group, parsed.envelope, payload.field("order_id") if payload else None)
        parsed.trace = trace.set_span_in_context(span)
        if payload is not None:
            sender = subscription.sender(record.topic, self.settings.topic_prefix) if subscription.per_party else None
            parsed.message = Message(payload, parsed.envelope, parsed.trace, sender)
        return parsed

    def _read(self, subscription: Subscription, record: ConsumerRecord) -> tuple[_Parsed, Contract | None]:
        model = _named_model(record.value)
        if model is not None and model.topic == subscription.topic:
            if model not in subscription.handlers:
                if _is_of_type(model, record.value):
                    return _Parsed(record, None), None
            elif (decoded := _decoded(model, record.value)) is not None:
                envelope, payload = decoded
                if subscription.awaits_elsewhere(payload):
                    return _Parsed(record, None, envelope), None
                return _Parsed(record, str(envelope.id), envelope), payload
        return self._read_any(subscription, record)

    def _read_any(self, subscription: Subscription, record: ConsumerRecord) -> tuple[_Parsed, Contract | None]:
        """Whatever the record holds: its payload, or why it is skipped or dead-lettered."""
        position_key = f"{record.topic}/{record.partition}/{record.offset}"
        try:
            envelope = _envelope(record.value)
        except InvalidMessage as bad:
            return _Parsed(record, position_key, dead_letter=(bad.reason, bad.detail)), None
        parsed = _Parsed(record, str(envelope.id), envelope)
        model = REGISTRY.get(envelope.type)
        if model is None:
            parsed.dead_letter = ("UNKNOWN_TYPE", f"no contract named {printable(envelope.type, 200)!r}")
        elif model.topic != subscription.topic:
            parsed.dead_letter = ("WRONG_TOPIC", f"{envelope.type} belongs on {model.topic}")
        elif model not in subscription.handlers:
            parsed.inbox_key = None  # another service's message
        else:
            try:
                payload = model.model_validate(envelope.data)
                if b"\\u0000" in record.value:  # cheap test first: NUL is legal JSON, but no field may hold it
                    refuse_nul_characters(model, envelope.data)
                if subscription.awaits_elsewhere(payload):
                    parsed.inbox_key = None
                    return parsed, None
                return parsed, payload
            except ValidationError as error:
                parsed.dead_letter = ("INVALID_PAYLOAD", _describe(error))
                parsed.validation_error = error
        return parsed, None

    async def _apply(self, subscription: Subscription, batch: list[_Parsed], isolate: bool) -> None:
        if all(item.inbox_key is None for item in batch):
            return  # nothing but other services' messages
        if self.relay is not None:
            await self.relay.joined()  # no rows while another instance's relay hands off (OutboxRelay)
        async with self.pool.acquire(timeout=ACQUIRE_TIMEOUT) as conn:
            uow = await self._apply_in_transaction(conn, subscription, batch, isolate)
            uow.committed()  # before the connection goes back: the relay is handed the rows in commit order

    async def _apply_in_transaction(self, conn: asyncpg.Connection, subscription: Subscription,
                                    batch: list[_Parsed], isolate: bool) -> UnitOfWork:
        async with conn.transaction():
            uow = UnitOfWork(conn, self.service, self.writes, self.settings, relay=self.relay)
            fresh = await uow.claim([p.inbox_key for p in batch if p.inbox_key is not None])
            todo: list[_Parsed] = []
            for item in batch:
                if item.inbox_key is None:
                    continue
                item.duplicate = item.inbox_key not in fresh
                if not item.duplicate:
                    fresh.discard(item.inbox_key)  # the same message twice in one batch is applied once
                    todo.append(item)
            if subscription.locks_first and (messages := [item.message for item in todo if item.message is not None]):
                await subscription.locks_first(uow, messages)
            if isolate:
                for item in todo:
                    await self._apply_alone(uow, subscription, item)
            else:
                await self._apply_together(uow, subscription, todo)
        return uow

    async def _apply_together(self, uow: UnitOfWork, subscription: Subscription, batch: list[_Parsed]) -> None:
        run: list[Message] = []
        for item in batch:
            if item.dead_letter is not None:
                self._dead_letter(uow, subscription, item, *item.dead_letter)
            elif item.message is not None:  # otherwise a type another service consumes from this topic
                if run and _handler(subscription, run[0]) is not _handler(subscription, item.message):
                    await self._handle(uow, subscription, run)
                    run = []
                run.append(item.message)
        if run:
            await self._handle(uow, subscription, run)
        self._dead_letter_refused(uow, subscription, batch)
        await uow.flush()

    async def _handle(self, uow: UnitOfWork, subscription: Subscription, run: list[Message]) -> None:
        started = time.perf_counter()
        await _handler(subscription, run[0])(uow, run)
        HANDLER_DURATION.labels(self.service, run[0].payload.message_type).observe(time.perf_counter() - started)

    def _dead_letter_refused(self, uow: UnitOfWork, subscription: Subscription, batch: list[_Parsed]) -> None:
        by_message = {id(item.message): item for item in batch if item.message is not None}
        for message, reason, detail in uow.refused:
            item = by_message[id(message)]
            item.dead_letter = (reason, detail)
            self._dead_letter(uow, subscription, item, reason, detail, answer=False)
        uow.refused = []

    async def _apply_alone(self, uow: UnitOfWork, subscription: Subscription, item: _Parsed) -> None:
        """One message in a savepoint with its own outbox rows; if anything about it fails, only its dead
        letter is written (without the answers it would have sent, which may be what failed)."""
        with _bound(item):
            flushed_before = len(uow.flushed)
            try:
                async with uow.conn.transaction():
                    await self._apply_together(uow, subscription, [item])
                return
            except Exception as error:
                if is_transient(error):
                    raise
                log.exception("consumer.message_failed")
                uow.discard_staged(flushed_before)  # undone with the savepoint: nothing of it handed to the relay
                item.dead_letter = item.dead_letter or ("HANDLER_ERROR", repr(error))
            async with uow.conn.transaction():
                self._dead_letter(uow, subscription, item, *item.dead_letter, answer=False)
                await uow.flush()

    def _dead_letter(self, uow: UnitOfWork, subscription: Subscription, item: _Parsed, reason: str, detail: str,
                     *, answer: bool = True) -> None:
        record = item.record
        detail = printable(detail, MAX_DETAIL)
        log.warning("consumer.dead_letter", topic=record.topic, partition=record.partition, offset=record.offset,
                    reason=reason, detail=detail[:500], trace_id=trace_id_of(item.trace))
        item.span.set_status(Status(StatusCode.ERROR, reason))
        value = record.value or b""
        letter = DeadLetter(
            consumer=self.group,
            source_topic=record.topic,
            source_partition=record.partition,
            source_offset=record.offset,
            reason=reason,
            detail=detail,
            original_key_b64=(base64.b64encode(record.key[:MAX_ORIGINAL_BYTES]).decode()
                              if record.key is not None else None),
            original_value_b64=base64.b64encode(value[:MAX_ORIGINAL_BYTES]).decode(),
            original_size=len(value),
            original_truncated=len(value) > MAX_ORIGINAL_BYTES,
            failed_at=datetime.now(UTC),
        )
        correlation = item.envelope.correlationid if item.envelope else letter.key()
        causation = str(item.envelope.id) if item.envelope else None
        uow.dead_letter(letter, record, correlation, causation, item.trace)
        if answer and subscription.on_invalid_payload and item.envelope and item.validation_error:
            for reply in subscription.on_invalid_payload(item.envelope, item.validation_error):
                uow.emit(reply, correlation_id=correlation, causation_id=causation, trace=item.trace)


def _handler(subscription: Subscription, message: Message) -> Handler:
    return subscription.handlers[type(message.payload)]


@contextmanager
def _bound(item: _Parsed) -> Iterator[None]:
    """Log lines written while handling a message alone carry its ids and its trace id."""
    envelope = item.envelope
    ids = {} if envelope is None else {"event_id": str(envelope.id), "correlation_id": envelope.correlationid,
                                       "order_id": envelope.subject, "message_type": envelope.type}
    with structlog.contextvars.bound_contextvars(**ids, trace_id=trace_id_of(item.trace)):
        yield


# Where an envelope names its type: found in the bytes, without parsing them, to know which model to parse them
# with. A wrong find (a payload field named type, say) fails that model's validation, or is not the envelope's
# type, and the general path reads it.
MESSAGE_TYPE = re.compile(rb'"type"\s*:\s*"([^"\\]{1,200})"')


def _named_model(value: bytes | None) -> type[Contract] | None:
    if not value or b"\\u0000" in value or (found := MESSAGE_TYPE.search(value)) is None:
        return None
    return REGISTRY.get(found.group(1).decode(errors="replace"))


def _decoded(model: type[Contract], value: bytes) -> tuple[Attributes, Contract] | None:
    """The common case, cheaply: a valid envelope of a type the subscription handles, parsed and validated with
    its payload in one pass (pydantic-core, from the bytes). Anything else (None) is read by _read_any, which says
    what is wrong with it exactly as it always has."""
    try:
        envelope = typed_envelope(model).model_validate_json(value)
    except ValidationError:
        return None
    return envelope, envelope.data


class _TypeOnly(BaseModel):
    type: str


def _is_of_type(model: type[Contract], value: bytes) -> bool:
    """Whether the record is JSON whose envelope's type is `model`'s, read without building the rest of it: a
    message the service has no handler for needs nothing more (its consumer judges the rest)."""
    try:
        return _TypeOnly.model_validate_json(value).type == model.message_type
    except ValidationError:
        return False


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
