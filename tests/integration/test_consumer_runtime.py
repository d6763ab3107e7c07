"""The consumer runtime on a real database, fed records directly: whatever fails about one message — its
handler, or the messages it staged — that message alone is dead-lettered, the rest of the batch applied; a
message the handler refuses is dead-lettered with the handler's reason code; another service's messages are
skipped without a claim, and a batch of nothing else without a transaction."""

import json
import uuid

import pytest
from aiokafka.structs import ConsumerRecord

from shared.contracts import wrap
from shared.contracts.common import Coordinates, Line
from shared.contracts.inventory import StockReserved
from services.capture.app import SERVICE as CAPTURE
from shared.contracts.routing import LocationRegistered, OrderRouted, RegisterLocation, RouteOrder
from shared.contracts.topics import DEAD_LETTERS, ROUTING_COMMANDS, ROUTING_EVENTS
from shared.messaging.consumer import Consumer, Subscription
from shared.messaging.unit_of_work import Message, UnitOfWork

from ops.waiting import eventually

from ..support.topics import TopicWatcher
from .conftest import service_pool

pytestmark = pytest.mark.integration


async def misbehaving(uow: UnitOfWork, batch: list[Message[RegisterLocation]]) -> None:
    """Answers every location, except: "boom" raises, "twice" stages its answer twice (the outbox refuses the
    duplicate id when the batch is written, after this handler returned), "unknown" is refused."""
    for message in batch:
        match message.payload.name:
            case "boom":
                raise RuntimeError("a bug in the handler")
            case "unknown":
                uow.refuse(message, "UNKNOWN_LOCATION", "nobody knows it")
                continue
        row = uow.reply(LocationRegistered(location_id=message.payload.location_id, kind="warehouse"), message)
        if message.payload.name == "twice":
            uow.staged.append(row)


def record(offset: int, name: str) -> ConsumerRecord:
    command = RegisterLocation(location_id=f"L-{uuid.uuid4().hex[:8]}", name=name, kind="warehouse",
                               coordinates=Coordinates(lat=50.0, lon=8.0))
    return raw_record(offset, wrap(command, source="test", correlation_id=f"c-{name}").model_dump_json().encode())


def someone_elses(offset: int, **envelope) -> ConsumerRecord:
    """A message of a type on this topic that only another service handles (routing's own RouteOrder stands in
    for it: the subscriptions below handle RegisterLocation alone)."""
    fields = {"specversion": "1.0", "id": str(uuid.uuid4()), "type": RouteOrder.message_type, "source": "test",
              "correlationid": "c-other", "data": {"not": "validated by a service that does not handle it"}}
    return raw_record(offset, json.dumps({**fields, **envelope}).encode())


def raw_record(offset: int, value: bytes) -> ConsumerRecord:
    return ConsumerRecord(topic=f"runtime-{uuid.uuid4().hex[:6]}", partition=0, offset=offset, timestamp=0,
                          timestamp_type=0, key=b"k", value=value, checksum=None, serialized_key_size=1,
                          serialized_value_size=len(value), headers=[])


@pytest.fixture
async def routing_pool(config):
    pool = await service_pool(config, "routing")
    yield pool
    await pool.close()


async def test_one_failing_message_is_dead_lettered_alone_whatever_failed(config, admin, routing_pool, published):
    consumer = Consumer(routing_pool, service="routing", writes=frozenset({ROUTING_EVENTS, DEAD_LETTERS}),
                        group=f"runtime-test-{uuid.uuid4().hex[:6]}", settings=config)
    names = ["ok", "boom", "ok", "twice", "ok", "unknown", "ok"]
    records = [record(offset, name) for offset, name in enumerate(names)]
    await consumer.process(Subscription(ROUTING_COMMANDS, {RegisterLocation: misbehaving}), records)

    letters = await admin.fetch("SELECT source_offset, reason FROM routing.dead_letters WHERE consumer = $1 "
                                "ORDER BY source_offset", consumer.group)
    assert [(r["source_offset"], r["reason"]) for r in letters] == [
        (1, "HANDLER_ERROR"), (3, "HANDLER_ERROR"), (5, "UNKNOWN_LOCATION")]
    async def answers() -> list[bytes]:
        """Staged in the outbox, or (a routing service of the same test run may be relaying it) published."""
        staged = await admin.fetch("SELECT value FROM routing.outbox WHERE topic = $1", ROUTING_EVENTS)
        return [r["value"] for r in staged] + [r.value for r in published.records if r.value]  # fuzz sent empty ones

    def answered(values: list[bytes], offset: int) -> bool:
        return any(_location_of(records[offset]).encode() in value for value in values)

    oks = [offset for offset, name in enumerate(names) if name == "ok"]
    values = await eventually(lambda: _all(answers(), lambda v: all(answered(v, o) for o in oks)),
                              what="every well-behaved message answered")
    assert [offset for offset in range(len(names)) if answered(values, offset)] == oks
    assert await admin.fetchval("SELECT count(*) FROM routing.inbox WHERE message_key = ANY($1)",
                                [_id_of(r) for r in records]) == len(records), "every record claimed, once"


async def test_a_batch_met_before_whole_or_in_part_has_each_message_applied_once(config, admin, routing_pool):
    """A message redelivered, with the next one or with the whole batch again: what each does is done once."""
    table = f"applied_{uuid.uuid4().hex[:8]}"
    async with routing_pool.acquire() as conn:
        role = await conn.fetchval("SELECT current_user")
    await admin.execute(f"CREATE TABLE routing.{table} (message_key text NOT NULL)")
    await admin.execute(f'GRANT INSERT ON routing.{table} TO "{role}"')

    async def applying(uow: UnitOfWork, batch: list[Message[RegisterLocation]]) -> None:
        await uow.conn.executemany(f"INSERT INTO {table} VALUES ($1)", [(str(m.envelope.id),) for m in batch])
        for message in batch:
            uow.reply(LocationRegistered(location_id=message.payload.location_id, kind="warehouse"), message)

    try:
        consumer = Consumer(routing_pool, service="routing", writes=frozenset({ROUTING_EVENTS, DEAD_LETTERS}),
                            group=f"runtime-test-{uuid.uuid4().hex[:6]}", settings=config)
        subscription = Subscription(ROUTING_COMMANDS, {RegisterLocation: applying})
        first, second = record(0, "first"), record(1, "second")
        await consumer.process(subscription, [first])
        await consumer.process(subscription, [first, second])  # redelivered with the next one
        await consumer.process(subscription, [first, second])  # redelivered whole
        applied = await admin.fetch(f"SELECT message_key, count(*) FROM routing.{table} GROUP BY 1")
        assert dict(applied) == {_id_of(first): 1, _id_of(second): 1}
    finally:
        await admin.execute(f"DROP TABLE routing.{table}")


class CountingPool:
    """The real pool, counting the connections taken from it."""

    def __init__(self, pool):
        self.pool, self.acquired = pool, 0

    def acquire(self, **kwargs):
        self.acquired += 1
        return self.pool.acquire(**kwargs)


async def test_another_services_messages_are_skipped_without_a_claim_and_alone_without_a_transaction(
        config, admin, routing_pool):
    pool = CountingPool(routing_pool)
    consumer = Consumer(pool, service="routing", writes=frozenset({ROUTING_EVENTS, DEAD_LETTERS}),
                        group=f"runtime-test-{uuid.uuid4().hex[:6]}", settings=config)
    subscription = Subscription(ROUTING_COMMANDS, {RegisterLocation: misbehaving})
    others = [someone_elses(0), someone_elses(1, id="not a uuid")]  # its own consumer judges the rest
    await consumer.process(subscription, others)
    assert pool.acquired == 0

    mixed = [someone_elses(0), record(1, "ok"), someone_elses(2)]
    await consumer.process(subscription, mixed)
    claimed = await admin.fetch("SELECT message_key FROM routing.inbox WHERE message_key = ANY($1)",
                                [_id_of(r) for r in others + mixed])
    assert [r["message_key"] for r in claimed] == [_id_of(mixed[1])]
    assert pool.acquired == 1


def _routed(asked: bool) -> OrderRouted:
    return OrderRouted(order_id=uuid.uuid4(), location_id="WH-1", explanation="x", allocation_requested=asked)


def _reserved(asked: bool) -> StockReserved:
    return StockReserved(order_id=uuid.uuid4(), lines=[Line(sku="SKU-1", quantity=1)], availability=[],
                         routing_requested=asked)


@pytest.mark.parametrize("reply", [_routed, _reserved], ids=["routing's decision", "inventory's reservation"])
async def test_a_reply_capture_awaits_an_answer_to_is_skipped_without_a_claim_or_a_transaction(config, admin, reply):
    """On a first sourcing inventory asks routing, routing has inventory pin what it decides, and the saga awaits
    inventory's answer to that: capture skips the reservation and the decision. One that asked nobody is read
    (here: about an unknown order, refused)."""
    pool = CountingPool(await service_pool(config, "capture"))
    try:
        consumer = Consumer(pool, service="capture", writes=frozenset(CAPTURE.publishes) | {DEAD_LETTERS},
                            group=f"runtime-test-{uuid.uuid4().hex[:6]}", settings=config)
        subscription = next(sub for sub in CAPTURE.subscriptions if sub.topic == reply(True).topic)
        decisions = [raw_record(offset, wrap(reply(asked), source="oms/other",
                                             correlation_id="c").model_dump_json().encode())
                     for offset, asked in enumerate([True, False])]
        await consumer.process(subscription, decisions[:1])
        assert pool.acquired == 0
        await consumer.process(subscription, decisions)
        claimed = await admin.fetch("SELECT message_key FROM capture.inbox WHERE message_key = ANY($1)",
                                    [_id_of(r) for r in decisions])
        assert [r["message_key"] for r in claimed] == [_id_of(decisions[1])] and pool.acquired == 1
        letters = await admin.fetch("SELECT source_offset, reason FROM capture.dead_letters WHERE consumer = $1",
                                    consumer.group)
        assert [(r["source_offset"], r["reason"]) for r in letters] == [(1, "UNKNOWN_ORDER")]
    finally:
        await pool.pool.close()


async def test_a_record_that_only_seems_to_be_another_services_is_read_as_usual(config, admin, routing_pool):
    """The type found first in its bytes is another service's, but its envelope's is ours: not skipped."""
    consumer = Consumer(routing_pool, service="routing", writes=frozenset({ROUTING_EVENTS, DEAD_LETTERS}),
                        group=f"runtime-test-{uuid.uuid4().hex[:6]}", settings=config)
    envelope = _envelope(record(0, "ok"))
    disguised = {"data": {"type": RouteOrder.message_type, **envelope.pop("data")}, **envelope}
    await consumer.process(Subscription(ROUTING_COMMANDS, {RegisterLocation: misbehaving}),
                           [raw_record(0, json.dumps(disguised).encode())])
    letters = await admin.fetch("SELECT reason, detail FROM routing.dead_letters WHERE consumer = $1", consumer.group)
    assert [r["reason"] for r in letters] == ["INVALID_PAYLOAD"] and "type" in letters[0]["detail"]


@pytest.fixture
async def published(config):
    async with TopicWatcher(config, ROUTING_EVENTS) as watcher:
        yield watcher


async def _all(values, accepted) -> list[bytes] | None:
    found = await values
    return found if accepted(found) else None


def _location_of(record: ConsumerRecord) -> str:
    return RegisterLocation.model_validate(_envelope(record)["data"]).location_id


def _id_of(record: ConsumerRecord) -> str:
    return _envelope(record)["id"]


def _envelope(record: ConsumerRecord) -> dict:
    return json.loads(record.value)
