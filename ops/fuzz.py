"""oms fuzz: hostile input at volume against a running OMS, then proof that all of it was refused and that the
valid traffic around it was not lost.

Per topic that some service consumes, `per_topic` hostile messages (ops/hostile.py) go out through producers
using every compression codec this machine can encode, shuffled together with valid channel orders and stock
receipts; then a twentieth of each topic's count again as duplicates: new content under an envelope id
already used on that partition. A location simulator ships the valid orders. When every consumer group has
committed up to the end of every partition, every outbox is empty and every valid order has settled, each
message is judged by what the OMS did with it (a dead letter at its position, an answer to the channel, its
effect in the database, or nothing for a duplicate), the invariant checker runs, and the services' processes and
error log lines are looked at.
"""

import asyncio
import importlib
import json
import random
import time
import uuid
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import asyncpg
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka import codec as kafka_codecs
from aiokafka.admin import AIOKafkaAdminClient
from pydantic import ValidationError

from services.capture.saga import ANSWERED_ELSEWHERE, REPLY_TYPES
from shared.contracts import REGISTRY, Contract, Envelope, wrap
from shared.contracts.common import Coordinates
from shared.contracts.fulfillment import LocationUpdate
from shared.contracts.inventory import ReceiveStock
from shared.contracts.ops import DeadLetter
from shared.contracts.orders import (OrderCancelled, OrderConfirmed, OrderEditRefused, OrderRejected, OrderShipped,
                                     PlaceOrder)
from shared.contracts.routing import RegisterLocation
from shared.contracts.topics import (
    DEAD_LETTERS,
    FULFILLMENT_LOCATION_UPDATES,
    INVENTORY_COMMANDS,
    ORDER_COMMANDS,
    ORDER_EVENTS,
    PARTITIONS,
)
from shared.db.bootstrap import SERVICES
from shared.messaging.consumer import Subscription
from shared.messaging.service import consumer_group
from shared.settings import Settings

from . import demo, history, invariants
from .client import client
from .hostile import DEAD_LETTER, DEDUPLICATED, EFFECT, REJECTED, HostileGenerator, Message, answer_key
from .principals import register_locations
from .processes import ServiceProcess
from .simulators import LocationSimulator
from .waiting import eventually

CODECS = {"none": lambda: True, "gzip": kafka_codecs.has_gzip, "snappy": kafka_codecs.has_snappy,
          "lz4": kafka_codecs.has_lz4, "zstd": kafka_codecs.has_zstd}
CHANNEL = "fuzz"
VALID_ORDER, VALID_RECEIPT = "valid order", "valid receipt"
HOSTILE_HEADERS_SHARE = 0.1  # of valid messages: they must be applied whatever their headers say
SEND_CHUNK = 500


@dataclass(frozen=True)
class Sent:
    topic: str
    kind: str
    expect: str
    partition: int
    offset: int
    envelope_id: str | None
    message_type: str | None
    ref: tuple[str, str] | None
    preview: bytes

    def position(self, settings: Settings) -> str:
        return f"{settings.topic(self.topic)}/{self.partition}/{self.offset}"


@dataclass
class Report:
    per_topic: int
    seed: int
    codecs: list[str]
    counts: Counter = field(default_factory=Counter)  # (topic, outcome) -> messages
    kinds: Counter = field(default_factory=Counter)  # (kind, outcome) -> messages
    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    seconds: dict[str, float] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not self.problems

    def __str__(self) -> str:
        lines = [f"fuzz: {self.per_topic} hostile messages per consumed topic, seed {self.seed}, "
                 f"codecs {', '.join(self.codecs)}", *self.notes, "", f"{'topic':<34} {'outcome':<62} {'messages':>8}"]
        for (topic, outcome), n in sorted(self.counts.items()):
            lines.append(f"{topic:<34} {outcome:<62} {n:>8}")
        lines += ["", f"{'kind':<34} {'outcome':<62} {'messages':>8}"]
        for (kind, outcome), n in sorted(self.kinds.items()):
            lines.append(f"{kind:<34} {outcome:<62} {n:>8}")
        lines.append("")
        lines.append("time: " + ", ".join(f"{phase} {s:.1f}s" for phase, s in self.seconds.items()))
        lines.append(f"problems: {len(self.problems)}")
        lines += [f"  - {p}" for p in self.problems[:60]]
        if len(self.problems) > 60:
            lines.append(f"  ... and {len(self.problems) - 60} more")
        return "\n".join(lines)


def subscriptions() -> list[tuple[str, Subscription]]:
    """(service, subscription) for every topic every service consumes."""
    return [(name, sub) for name in SERVICES
            for sub in importlib.import_module(f"services.{name}.app").SERVICE.subscriptions]


def lookups() -> dict[str, list[type[Contract]]]:
    """Per topic, the well-formed messages whose handler must find an existing order, and refuses them otherwise."""
    found: dict[str, list[type[Contract]]] = {}
    for reply in sorted(REPLY_TYPES, key=lambda m: m.message_type):
        found.setdefault(reply.topic, []).append(reply)
    found[FULFILLMENT_LOCATION_UPDATES] = [LocationUpdate]
    found[ORDER_EVENTS] = [OrderConfirmed, OrderShipped, OrderCancelled]  # notification looks up the recipient
    return found


@dataclass(frozen=True)
class ValidTraffic:
    """A location with plenty of stock, orders that must ship from it, and receipts that must be booked."""

    tag: str
    skus: int = 3

    @property
    def location(self) -> RegisterLocation:
        return RegisterLocation(location_id=f"{self.tag}-WH", name="fuzz warehouse", kind="warehouse",
                                coordinates=Coordinates(lat=50.11, lon=8.68))

    def sku(self, i: int) -> str:
        return f"{self.tag}-SKU{i}"

    def opening_stock(self) -> list[ReceiveStock]:
        return [ReceiveStock(receipt_id=f"{self.tag}-OPEN{i}", sku=self.sku(i), location_id=self.location.location_id,
                             quantity=1_000_000) for i in range(self.skus)]

    def order(self, channel_order_id: str, rng: random.Random) -> PlaceOrder:
        lines = [(self.sku(i), rng.randint(1, 3)) for i in rng.sample(range(self.skus), rng.randint(1, self.skus))]
        return demo.sample_order(channel_order_id, lines=lines, channel=CHANNEL)

    def receipt(self, receipt_id: str, rng: random.Random) -> ReceiveStock:
        return ReceiveStock(receipt_id=receipt_id, sku=self.sku(rng.randrange(self.skus)),
                            location_id=self.location.location_id, quantity=rng.randint(1, 50))


ANSWERS = {OrderRejected.message_type, OrderEditRefused.message_type}  # capture's answers to a refused message


class Fuzz:
    def __init__(self, settings: Settings, per_topic: int, seed: int, processes: Iterable[ServiceProcess] = ()):
        self.settings = settings
        self.per_topic = per_topic
        self.rng = random.Random(seed)
        self.tag = f"FZ-{uuid.uuid4().hex[:8].upper()}"
        self.valid = ValidTraffic(self.tag)
        self.subscriptions = subscriptions()
        self.topics = sorted({sub.topic for _, sub in self.subscriptions})
        handled = {topic: {model for _, sub in self.subscriptions if sub.topic == topic for model in sub.handlers}
                   for topic in self.topics}
        answers = {sub.topic: sub.on_invalid_payload for _, sub in self.subscriptions if sub.on_invalid_payload}
        self.hostile = HostileGenerator(self.rng, self.tag, handled, lookups(), answers, ANSWERED_ELSEWHERE)
        self.pids = {p: pid for p in processes if (pid := p.pid()) is not None}
        self.codecs = [name for name, available in CODECS.items() if available()]
        self.report = Report(per_topic, seed, self.codecs)
        self.sent: list[Sent] = []
        self.serial = 0

    async def run(self, timeout: float) -> Report:
        started = time.monotonic()
        skipped = [name for name in CODECS if name not in self.codecs]
        if skipped:
            self.report.notes.append(f"skipped codecs {', '.join(skipped)}: their compression library (cramjam) "
                                     f"is not importable here")
        log_marks = {p.name: _size(p.logfile) for p in self.pids}
        since = {topic: await history.end_offsets(self.settings, topic) for topic in (DEAD_LETTERS, ORDER_EVENTS)}
        async with client(self.settings, "channel/fuzz") as channel, Producers(self.settings, self.codecs) as out:
            await self.open_network(channel)
            simulator = LocationSimulator(self.settings, channel, group=f"oms.fuzz.{self.tag}",
                                          handles=lambda work: work["location_id"] == self.valid.location.location_id)
            shipping = asyncio.create_task(simulator.run())
            try:
                await self.send(out, self.first_pass())
                await self.send(out, self.duplicates())
                self.report.seconds["send"] = time.monotonic() - started
                pending = await self.settle(timeout)
            finally:
                shipping.cancel()
                await asyncio.gather(shipping, return_exceptions=True)
        self.report.seconds["until settled"] = time.monotonic() - started
        if pending:
            self.report.problems.append(f"not settled after {timeout:.0f}s: {pending}")
        await self.judge(since)
        await self.check_invariants()
        self.check_processes(log_marks)
        self.report.seconds["total"] = time.monotonic() - started
        return self.report

    # --- sending ---------------------------------------------------------------------------------------------

    async def open_network(self, channel) -> None:
        await register_locations(channel, [self.valid.location])
        await channel.send_many(self.valid.opening_stock())
        conn = await asyncpg.connect(self.settings.reader_dsn())
        try:
            await eventually(lambda: conn.fetchval(
                "SELECT count(*) = $2 FROM inventory.location_stock WHERE location_id = $1",
                self.valid.location.location_id, self.valid.skus), timeout=60, what="the fuzz run's opening stock")
            await eventually(lambda: conn.fetchval("SELECT 1 FROM routing.locations WHERE location_id = $1",
                                                   self.valid.location.location_id), timeout=60,
                             what="the fuzz run's location")
        finally:
            await conn.close()

    def first_pass(self) -> Iterable[Message]:
        """Hostile messages for every consumed topic with valid orders and receipts among them, shuffled."""
        plan: list[tuple[str, str]] = []
        hostile = self.per_topic - _duplicates(self.per_topic)
        for topic in self.topics:
            kinds, weights = zip(*self.hostile.kinds_for(topic), strict=True)
            plan += [(topic, kind) for kind in self.rng.choices(kinds, weights, k=hostile)]
        valid = max(5, self.per_topic // 20)
        plan += [(ORDER_COMMANDS, VALID_ORDER)] * valid + [(INVENTORY_COMMANDS, VALID_RECEIPT)] * valid
        self.rng.shuffle(plan)
        for topic, kind in plan:
            yield self.valid_message(kind) if kind in (VALID_ORDER, VALID_RECEIPT) else self.hostile.make(topic, kind)

    def valid_message(self, kind: str, envelope_id: str | None = None) -> Message:
        self.serial += 1
        if kind == VALID_ORDER:
            payload: Contract = self.valid.order(f"{self.tag}-V{self.serial}", self.rng)
            ref = (CHANNEL, payload.channel_order_id)
        else:
            payload = self.valid.receipt(f"{self.tag}-R{self.serial}", self.rng)
            ref = ("receipt", payload.receipt_id)
        envelope = wrap(payload, source="channel/fuzz", correlation_id=str(uuid.uuid4()))
        if envelope_id:
            envelope = envelope.model_copy(update={"id": uuid.UUID(envelope_id)})
        headers = self.hostile.hostile_header_list() if self.rng.random() < HOSTILE_HEADERS_SHARE else []
        return Message(payload.topic, kind + (", hostile headers" if headers else ""), EFFECT,
                       envelope.model_dump_json().encode(), payload.key().encode(), headers, str(envelope.id), ref)

    def duplicates(self) -> Iterable[Message]:
        """New content under ids already used on the same partition: up to half of them valid orders' and
        receipts' ids (new content that would apply if the id did not stop it), the rest hostile messages' ids."""
        wanted = _duplicates(self.per_topic)
        for topic in self.topics:
            used = [s for s in self.sent if s.topic == topic and s.envelope_id]
            valid = [s for s in used if s.expect == EFFECT][:wanted // 2]
            for original in valid + [s for s in used if s.expect != EFFECT][:wanted - len(valid)]:
                if original.kind.startswith(VALID_ORDER):
                    message = self.valid_message(VALID_ORDER, original.envelope_id)
                elif original.kind.startswith(VALID_RECEIPT):
                    message = self.valid_message(VALID_RECEIPT, original.envelope_id)
                else:
                    message = self.hostile.under_id(topic, original.envelope_id, original.message_type)
                message.kind, message.expect, message.partition = "duplicate id", DEDUPLICATED, original.partition
                yield message

    async def send(self, out: "Producers", messages: Iterable[Message]) -> None:
        chunk: list[tuple[Message, asyncio.Future]] = []
        for message in messages:
            chunk.append((message, await out.send(message, self.rng.choice(self.codecs))))
            if len(chunk) >= SEND_CHUNK:
                await self.record(chunk)
                chunk = []
        await self.record(chunk)

    async def record(self, chunk: list[tuple[Message, asyncio.Future]]) -> None:
        for message, delivery in chunk:
            meta = await delivery
            self.sent.append(Sent(message.topic, message.kind, message.expect, meta.partition, meta.offset,
                                  message.envelope_id, message.message_type, message.ref,
                                  (message.value or b"")[:160]))

    # --- waiting ---------------------------------------------------------------------------------------------

    async def settle(self, timeout: float) -> str:
        """Wait until every consumer group is at the end of every partition, every outbox is empty and every valid
        order has settled; returns what is still pending when the deadline passes ('' when settled)."""
        valid_orders = [s.ref[1] for s in self.sent if s.expect == EFFECT and s.ref[0] == CHANNEL]
        last_print = time.monotonic()
        pending = ""
        conn = await asyncpg.connect(self.settings.reader_dsn())
        admin = AIOKafkaAdminClient(**self.settings.kafka_login().aiokafka(), client_id="oms-fuzz")
        await admin.start()
        ends = AIOKafkaConsumer(**self.settings.kafka_login().aiokafka(), enable_auto_commit=False)
        await ends.start()

        async def settled() -> bool:
            nonlocal pending, last_print
            # Lag last: what the orders' last steps published (outbox empty) must also have been consumed
            # (a cancelled order's customer message), not only what was published before the lag was read.
            outboxes = {s: n for s in SERVICES if (n := await conn.fetchval(f"SELECT count(*) FROM {s}.outbox"))}
            open_orders = await conn.fetchval(
                "SELECT count(*) FROM capture.orders WHERE channel = $1 AND channel_order_id = ANY($2) "
                "AND status = ANY($3::text[])", CHANNEL, valid_orders, list(invariants.SETTLED))
            lag = await self.lag(admin, ends)
            unsettled = len(valid_orders) - open_orders
            pending = ", ".join([*(f"{g} lags {n}" for g, n in lag.items()), *(f"{s} outbox holds {n}" for s, n in
                                                                               outboxes.items())]
                                + ([f"{unsettled} valid orders unsettled"] if unsettled else []))
            if time.monotonic() - last_print > 10:
                print(f"  waiting: {pending or 'settled'}", flush=True)
                last_print = time.monotonic()
            return not pending

        try:
            await eventually(settled, timeout=timeout, interval=1.0, what="the OMS to work through the fuzz run")
            return ""
        except TimeoutError:
            return pending
        finally:
            await ends.stop()
            await admin.close()
            await conn.close()

    async def lag(self, admin: AIOKafkaAdminClient, ends: AIOKafkaConsumer) -> dict[str, int]:
        """Per consumer group, how many records it has yet to commit."""
        lag: dict[str, int] = {}
        for service, sub in self.subscriptions:
            group = consumer_group(service, sub.topic)
            partitions = [TopicPartition(self.settings.topic(sub.topic), p) for p in range(PARTITIONS)]
            if behind := await history.records_behind(admin, group, await ends.end_offsets(partitions)):
                lag[group] = behind
        return lag

    # --- judging ---------------------------------------------------------------------------------------------

    async def judge(self, since: dict[str, dict[int, int]]) -> None:
        letters = await self.dead_letters(since[DEAD_LETTERS])
        rejections = await self.rejections(since[ORDER_EVENTS])
        orders, receipts = await self.effects()
        for sent in self.sent:
            outcome, ok = _judge(sent, letters.get(sent.position(self.settings)), rejections, orders, receipts)
            self.report.counts[(sent.topic, outcome)] += 1
            self.report.kinds[(sent.kind, outcome)] += 1
            if not ok:
                self.report.problems.append(f"{sent.position(self.settings)} {sent.kind}: {outcome}; "
                                            f"value starts {sent.preview!r}")

    async def dead_letters(self, since: dict[int, int]) -> dict[str, str]:
        """Position of the original -> reason, for the dead letters written since the run began."""
        letters = {}
        async for record in history.records(self.settings, DEAD_LETTERS, since):
            envelope = Envelope.model_validate_json(record.value)
            if envelope.type == DeadLetter.message_type:  # the topic also holds audit records of replays
                letter = DeadLetter.model_validate(envelope.data)
                letters[letter.key()] = letter.reason
        return letters

    async def rejections(self, since: dict[int, int]) -> set[tuple[str, ...]]:
        """The answer_key of every OrderRejected and OrderEditRefused capture wrote since the run began."""
        found = set()
        async for record in history.records(self.settings, ORDER_EVENTS, since):
            try:
                envelope = Envelope.model_validate_json(record.value or b"")
            except ValidationError:
                continue  # the run's own hostile messages are on this topic too
            if envelope.type in ANSWERS and envelope.source == "oms/capture":
                found.add(answer_key(REGISTRY[envelope.type].model_validate(envelope.data)))
        return found

    async def effects(self) -> tuple[dict[str, str], set[str]]:
        """Status per channel order id of the run's channel, and the booked receipt ids of this run."""
        conn = await asyncpg.connect(self.settings.reader_dsn())
        try:
            orders = await conn.fetch("SELECT channel_order_id, status FROM capture.orders WHERE channel = $1 "
                                      "AND channel_order_id LIKE $2", CHANNEL, f"{self.tag}-%")
            hostile = await conn.fetch("SELECT channel_order_id, status FROM capture.orders WHERE channel_order_id "
                                       "LIKE $1 AND channel <> $2", f"{self.tag}-%", CHANNEL)
            receipts = await conn.fetch("SELECT receipt_id FROM inventory.receipts WHERE receipt_id LIKE $1",
                                        f"{self.tag}-%")
        finally:
            await conn.close()
        found = {r["channel_order_id"]: r["status"] for r in [*orders, *hostile]}
        return found, {r["receipt_id"] for r in receipts}

    async def check_invariants(self) -> None:
        conn = await asyncpg.connect(self.settings.reader_dsn())
        try:
            checked = await invariants.check(conn)
        finally:
            await conn.close()
        violations = checked.violations + await invariants.check_topics(self.settings)
        self.report.notes.append(f"invariant checker: {checked.orders} orders, {len(violations)} violations")
        self.report.problems += [f"invariant: {v}" for v in violations]

    def check_processes(self, log_marks: dict[str, int]) -> None:
        for proc, pid in self.pids.items():
            if proc.pid() != pid:  # gone, or restarted by a supervisor
                self.report.problems.append(f"service {proc.name} (pid {pid}) crashed: now pid {proc.pid()}, "
                                            f"log {proc.logfile}")
            errors = _error_lines(proc.logfile, log_marks[proc.name])
            for event, n in errors.most_common(5):
                self.report.notes.append(f"{proc.name} logged {n} x {event}")


def _judge(sent: Sent, reason: str | None, rejections: set[tuple[str, ...]], orders: dict[str, str],
           receipts: set[str]) -> tuple[str, bool]:
    """What happened to one message, and whether that is what had to happen."""
    applied = sent.ref is not None and (sent.ref[1] in receipts if sent.ref[0] == "receipt" else sent.ref[1] in orders)
    if sent.expect == EFFECT:
        if reason:
            return f"valid but dead-lettered {reason}", False
        if sent.ref[0] == "receipt":
            return ("valid: booked", True) if applied else ("valid: NOT BOOKED", False)
        status = orders.get(sent.ref[1], "missing")
        return f"valid: {status}", status in invariants.HANDED_OVER
    if sent.expect == DEDUPLICATED:
        if reason:
            return f"duplicate id, but dead-lettered {reason}", False
        return ("duplicate id, but APPLIED", False) if applied else ("deduplicated", True)
    if reason is None:
        return "NOT REFUSED: no dead letter", False
    if applied:
        return f"dead-lettered {reason}, but an order was created", False
    if sent.expect == REJECTED:
        rejected = sent.ref in rejections
        return f"dead-lettered {reason} + {'' if rejected else 'NO '}{sent.ref[2]}", rejected
    assert sent.expect == DEAD_LETTER
    return f"dead-lettered {reason}", True


def _duplicates(per_topic: int) -> int:
    return per_topic // 20


def _size(path: Path) -> int:
    return path.stat().st_size if path.exists() else 0


def _error_lines(logfile: Path, start: int) -> Counter:
    """Error and critical log lines written since `start`, by event (lines that are not JSON count as raw)."""
    found: Counter = Counter()
    with logfile.open("rb") as log:
        log.seek(start)
        for line in log:
            try:
                entry = json.loads(line)
            except ValueError:
                found["(not a JSON line) " + line[:100].decode(errors="replace").strip()] += 1
                continue
            if entry.get("level") in ("error", "critical", "exception"):
                found[str(entry.get("event"))[:120]] += 1
    return found


class Producers:
    """One producer per compression codec; a message goes out through the one named."""

    def __init__(self, settings: Settings, codecs: list[str]):
        self.settings = settings
        self.producers = {codec: AIOKafkaProducer(**settings.kafka_login().aiokafka(),
                                                  client_id=f"oms-fuzz-{codec}", acks="all", linger_ms=5,
                                                  compression_type=None if codec == "none" else codec)
                          for codec in codecs}

    async def __aenter__(self) -> "Producers":
        for producer in self.producers.values():
            await producer.start()
        return self

    async def __aexit__(self, *exc) -> None:
        for producer in self.producers.values():
            await producer.stop()

    async def send(self, message: Message, codec: str) -> asyncio.Future:
        return await self.producers[codec].send(self.settings.topic(message.topic), message.value, message.key,
                                                partition=message.partition, headers=message.headers or None)


async def fuzz(settings: Settings, per_topic: int, seed: int, processes: Iterable[ServiceProcess] = (),
               timeout: float | None = None) -> Report:
    """Run the fuzz against the OMS behind `settings`; `processes` are its services, checked for crashes."""
    run = Fuzz(settings, per_topic, seed, processes)
    return await run.run(timeout if timeout is not None else 120 + per_topic * len(run.topics) / 100)
