"""The capture service as a process on real Kafka and Postgres, fed what a careless or hostile channel sends:
nothing valid may be lost behind a bad message, and no bad message may stop the service."""

import base64
import json
import uuid

import pytest
from aiokafka import AIOKafkaProducer

from ops.demo import sample_order
from services.capture.validation import order_id_for
from shared.contracts import wrap
from shared.contracts.ops import DeadLetter
from shared.contracts.orders import OrderAccepted, OrderRejected, PlaceOrder
from shared.contracts.topics import DEAD_LETTERS, ORDER_COMMANDS, ORDER_EVENTS

from ..support.services import running
from ..support.topics import TopicWatcher
from ops.waiting import eventually

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
async def capture_service(config, tmp_path_factory):
    async with running(("capture",), tmp_path_factory.mktemp("run")) as procs:
        yield procs["capture"]


@pytest.fixture
async def partition_zero(config):
    """A channel that writes every record to one partition, so they all land in the same consumer batches."""
    producer = AIOKafkaProducer(**config.kafka_login().aiokafka(), acks="all", linger_ms=50,
                                max_request_size=2 * 1024 * 1024)
    await producer.start()

    async def send(value: bytes, headers: list[tuple[str, bytes | None]] = ()) -> None:
        await producer.send(config.topic(ORDER_COMMANDS), value, key=b"hostile", partition=0, headers=list(headers))

    yield send
    await producer.flush()
    await producer.stop()


def order_under_id(channel_order_id: str, quantity: int = 1) -> bytes:
    """A PlaceOrder envelope under any channel order id, with any quantity, whatever the contract says."""
    order = sample_order("X", lines=[("SKU-1", 1)])
    data = order.model_dump(mode="json") | {"channel_order_id": channel_order_id}
    data["lines"][0]["quantity"] = quantity
    envelope = wrap(order, source="test/channel", correlation_id=str(uuid.uuid4())).model_copy(update={"data": data})
    return envelope.model_dump_json().encode()


def invalid_order(channel_order_id: str) -> bytes:
    """A PlaceOrder the contract refuses (negative quantity), under a given channel order id."""
    return order_under_id(channel_order_id, quantity=-1)


def envelope_of(order: PlaceOrder) -> bytes:
    return wrap(order, source="test/channel", correlation_id=str(uuid.uuid4())).model_dump_json().encode()


async def assert_all_accepted(events: TopicWatcher, orders: list[PlaceOrder]) -> None:
    expected = {str(order_id_for(o.channel, o.channel_order_id)) for o in orders}
    await events.wait_for(lambda e: e.get("type") == OrderAccepted.message_type and e.get("subject") in expected,
                          count=len(expected), timeout=60, what=f"{len(expected)} orders accepted")


@pytest.mark.parametrize("channel_order_id", ["NUL\x00IN-ID", "BELL\x07-AND-ESC\x1b"])
async def test_a_control_character_in_an_order_id_loses_nothing_around_it(config, capture_service, partition_zero,
                                                                          channel_order_id):
    before = [sample_order(f"B-{uuid.uuid4().hex[:8]}") for _ in range(50)]
    after = [sample_order(f"A-{uuid.uuid4().hex[:8]}") for _ in range(50)]
    bad = invalid_order(channel_order_id)
    async with TopicWatcher(config, ORDER_EVENTS) as events, TopicWatcher(config, DEAD_LETTERS) as dead:
        for order in before:
            await partition_zero(envelope_of(order))
        await partition_zero(bad)
        for order in after:
            await partition_zero(envelope_of(order))
        await assert_all_accepted(events, before + after)
        [letter] = await dead.wait_for(lambda e: e.get("type") == DeadLetter.message_type
                                       and base64.b64decode(e["data"]["original_value_b64"]) == bad)
    assert letter["data"]["reason"] == "INVALID_PAYLOAD"
    assert not events.envelopes(lambda e: e.get("type") == OrderRejected.message_type
                                and "\x00" in e["data"].get("channel_order_id", "")), "nothing echoes a NUL"


async def test_a_valid_looking_order_with_a_nul_in_its_id_is_refused_and_the_rest_accepted(
        config, capture_service, partition_zero):
    orders = [sample_order(f"V-{uuid.uuid4().hex[:8]}") for _ in range(20)]
    bad = order_under_id("NUL\x00VALID")
    async with TopicWatcher(config, ORDER_EVENTS) as events, TopicWatcher(config, DEAD_LETTERS) as dead:
        await partition_zero(bad)
        for order in orders:
            await partition_zero(envelope_of(order))
        await assert_all_accepted(events, orders)
        [letter] = await dead.wait_for(lambda e: e.get("type") == DeadLetter.message_type
                                       and base64.b64decode(e["data"]["original_value_b64"]) == bad)
    assert letter["data"]["reason"] == "INVALID_PAYLOAD"


async def test_an_oversized_order_id_is_not_echoed_and_freezes_nothing(config, capture_service, partition_zero):
    huge = invalid_order("H" * 400_000)
    answerable = invalid_order(f"SMALL-{uuid.uuid4().hex[:8]}")
    orders = [sample_order(f"O-{uuid.uuid4().hex[:8]}") for _ in range(30)]
    async with TopicWatcher(config, ORDER_EVENTS) as events, TopicWatcher(config, DEAD_LETTERS) as dead:
        await partition_zero(huge)
        await partition_zero(answerable)
        for order in orders:
            await partition_zero(envelope_of(order))
        await assert_all_accepted(events, orders)
        await events.wait_for(lambda e: e.get("type") == OrderRejected.message_type
                              and e["data"]["channel_order_id"].startswith("SMALL-"), what="the small rejection")
        [letter] = await dead.wait_for(lambda e: e.get("type") == DeadLetter.message_type
                                       and e["data"]["source_offset"] == _offset_of(dead, huge, e))
    assert letter["data"]["reason"] == "INVALID_PAYLOAD"
    ours = [envelope for envelope, record in events.matching(lambda e: e.get("source") == "oms/capture")]
    assert ours and all(len(json.dumps(e)) < 10_000 for e in ours), "everything capture echoed back is bounded"


def _offset_of(dead: TopicWatcher, original: bytes, letter: dict) -> int | None:
    """The dead letter's offset if it is the one for `original` (whose bytes it may carry only in part)."""
    data = letter["data"]
    stored = base64.b64decode(data["original_value_b64"])
    if stored == original or (data.get("original_size") == len(original) and original.startswith(stored)):
        return data["source_offset"]
    return None


async def test_a_message_kafka_refuses_is_parked_and_blocks_nothing(config, admin, capture_service, partition_zero):
    """Whatever a future bug stages, a row Kafka can never take is set aside with its reason, and the rows
    behind it are published; the relay keeps no connection from the pool on its error paths."""
    too_large = [uuid.uuid4() for _ in range(3)]
    await admin.executemany("INSERT INTO capture.outbox (event_id, topic, key, value) VALUES ($1, $2, 'k', $3)",
                            [(event_id, ORDER_EVENTS, b"x" * 2_000_000) for event_id in too_large])
    orders = [sample_order(f"P-{uuid.uuid4().hex[:8]}") for _ in range(20)]
    async with TopicWatcher(config, ORDER_EVENTS) as events:
        for order in orders:
            await partition_zero(envelope_of(order))
        await assert_all_accepted(events, orders)

    async def all_parked():  # committed just after Kafka acknowledged the rows published with them
        rows = await admin.fetch("SELECT event_id, reason FROM capture.outbox_parked WHERE event_id = ANY($1)",
                                 too_large)
        return rows if len(rows) == len(too_large) else None

    parked = await eventually(all_parked, what="the refused rows to be parked")
    await admin.execute("DELETE FROM capture.outbox_parked WHERE event_id = ANY($1)", too_large)  # seen; for the
    # invariant checker of later tests in this session, which counts any parked message as a loss
    assert sorted(r["event_id"] for r in parked) == sorted(too_large)
    assert all("TooLarge" in r["reason"] for r in parked), [r["reason"] for r in parked]
    connections = await admin.fetchval("SELECT count(*) FROM pg_stat_activity WHERE application_name = $1",
                                       f"oms-capture-{capture_service.pid()}")
    assert 0 < connections <= 10, "the pool's maximum: nothing leaked"


async def test_headers_no_decoder_can_read_lose_nothing_and_redirect_nothing(config, capture_service, partition_zero):
    """Found by `oms fuzz`: FastStream decoded every header as UTF-8 and, on one that was not, skipped the whole
    batch and committed past it; and it published to whatever topic a `reply_to` header named."""
    orders = [sample_order(f"HD-{uuid.uuid4().hex[:8]}") for _ in range(30)]
    hostile_headers = [[("x", b"\xff\xfe")], [("x", None)], [("reply_to", b"orders.commands.v1")]]
    async with TopicWatcher(config, ORDER_EVENTS) as events:
        for index, order in enumerate(orders):
            headers = hostile_headers[index % 3] if index % 5 == 0 else []
            await partition_zero(envelope_of(order), headers=headers)
        await assert_all_accepted(events, orders)
