"""The stand-ins and the test client keep going through what a broker restart does to a client: a commit refused
because the group rebalanced meanwhile, a producer whose sequence the broker lost. The fault test that restarts
the broker found a stand-in stopped by the first (its orders never settled)."""

import asyncio
import json
import uuid
from types import SimpleNamespace

import pytest
from aiokafka import TopicPartition
from aiokafka.errors import (
    CommitFailedError,
    KafkaTimeoutError,
    MessageSizeTooLargeError,
    OutOfOrderSequenceNumber,
    ProducerClosed,
    TopicAuthorizationFailedError,
)

from ops.client import Client
from ops.simulators import _consume, _Heard, joined
from shared.contracts.orders import ReleaseHold
from shared.settings import Settings


class Done(Exception):
    """Ends the stand-in's loop once the scripted batches are through."""


class Consumer:
    """Hands out the scripted batches; refuses the commits it is told to."""

    def __init__(self, batches: list[list[dict]], refused_commits: int):
        self.batches = batches
        self.refused_commits = refused_commits
        self.commits = 0

    async def start(self) -> None: ...

    async def stop(self) -> None: ...

    async def getmany(self, timeout_ms: int) -> dict:
        if not self.batches:
            raise Done
        return {("topic", 0): [SimpleNamespace(value=json.dumps(e).encode()) for e in self.batches.pop(0)]}

    async def commit(self) -> None:
        if self.refused_commits:
            self.refused_commits -= 1
            raise CommitFailedError("the group has already rebalanced")
        self.commits += 1


async def test_a_refused_commit_does_not_stop_a_stand_in_and_the_batch_coming_again_is_not_handled_twice():
    first, second, third = ({"id": str(uuid.uuid4())} for _ in range(3))
    consumer = Consumer([[first, second], [first, second, third]], refused_commits=1)
    handled = []

    async def handle(envelopes: list[dict]) -> None:
        handled.extend(envelopes)

    with pytest.raises(Done):
        await _consume(consumer, handle)
    assert handled == [first, second, third]
    assert consumer.commits == 1


def test_the_stand_ins_hear_each_envelope_once_within_their_memory():
    first, again, later = ({"id": str(uuid.uuid4())} for _ in range(3))
    heard = _Heard(keep=2)
    assert heard.new([first, first, again]) == [first, again], "relayed twice"
    heard.add([first, again])
    assert heard.new([first, again, later]) == [later], "a batch redelivered after a failed commit"
    heard.add([later])
    assert heard.new([first, later]) == [], "the latest two to four are kept"
    heard.add([{"id": "a"}, {"id": "b"}])
    assert heard.new([first]) == [first], "older ones are forgotten"


class Producer:
    """Takes messages, or fails each send with `error` (until `failing` sends have failed)."""

    def __init__(self, error: Exception | None = None, failing: int = 0):
        self.error = error
        self.failing = failing
        self.sent: list[tuple[str, bytes, bytes | None]] = []
        self.started = self.stopped = False

    async def start(self) -> None:
        self.started = True

    async def stop(self) -> None:
        self.stopped = True

    async def send(self, topic: str, value: bytes, key: bytes | None) -> asyncio.Future:
        delivery = asyncio.get_running_loop().create_future()
        if self.error and self.failing:
            self.failing -= 1
            delivery.set_exception(self.error)
        else:
            self.sent.append((topic, value, key))
            delivery.set_result(None)
        return delivery


def _client(first: Producer, then: list[Producer], patience: float = 60.0) -> Client:
    producers = [first, *then]
    client = Client(lambda: producers.pop(0), Settings(kafka_bootstrap="localhost:9092"), "test/stand-in",
                    patience=patience)
    return client


RELEASE = ReleaseHold(channel="web", channel_order_id="W-1", reason="manual", released_by="hold-desk")


async def test_a_send_the_broker_lost_goes_again_by_a_new_producer_with_the_same_envelopes(monkeypatch):
    monkeypatch.setattr("ops.client.Backoff.sleep", _no_wait)
    lost, fresh = Producer(OutOfOrderSequenceNumber(), failing=1), Producer()
    client = _client(lost, [fresh])
    envelopes = await client.send_many([RELEASE, RELEASE])
    assert lost.stopped and fresh.started and client.producer is fresh
    assert [json.loads(value)["id"] for _, value, _ in fresh.sent] == [str(e.id) for e in envelopes]


class Holding(Producer):
    """Holds every delivery until the test settles it; stopping fails those still held, as aiokafka's producer
    does to the sends under way when it closes."""

    def __init__(self):
        super().__init__()
        self.held: list[asyncio.Future] = []

    async def send(self, topic: str, value: bytes, key: bytes | None) -> asyncio.Future:
        self.held.append(asyncio.get_running_loop().create_future())
        return self.held[-1]

    async def stop(self) -> None:
        self.stopped = True
        for delivery in self.held:
            if not delivery.done():
                delivery.set_exception(ProducerClosed())
        for _ in range(10):  # the sends it failed run on while it is still stopping, as aiokafka's do
            await asyncio.sleep(0)


async def test_a_send_whose_producer_another_send_replaced_goes_again_by_the_new_one(monkeypatch):
    """The broker-restart fault test: the stand-ins share their client's producer; one send's failure replaced
    it while another's was under way, which then failed ProducerClosed and stopped its stand-in."""
    monkeypatch.setattr("ops.client.Backoff.sleep", _no_wait)
    shared, fresh = Holding(), Producer()
    client = _client(shared, [fresh])
    both = asyncio.gather(client.send_many([RELEASE]), client.send_many([RELEASE]))
    while len(shared.held) < 2:
        await asyncio.sleep(0)
    shared.held[0].set_exception(OutOfOrderSequenceNumber())
    first, second = await both
    assert shared.stopped and client.producer is fresh
    assert sorted(json.loads(value)["id"] for _, value, _ in fresh.sent) == sorted(str(e.id) for e in first + second)


async def test_the_client_gives_up_after_its_patience_and_never_retries_what_kafka_refuses(monkeypatch):
    monkeypatch.setattr("ops.client.Backoff.sleep", _no_wait)
    away = _client(Producer(KafkaTimeoutError(), failing=99), [], patience=0)
    with pytest.raises(KafkaTimeoutError):
        await away.send_many([RELEASE])
    for refusal in (MessageSizeTooLargeError(), TopicAuthorizationFailedError()):
        refused = Producer(refusal, failing=1)
        with pytest.raises(type(refusal)):
            await _client(refused, []).send_many([RELEASE])
        assert not refused.stopped


async def _no_wait(_) -> None:
    return None


def test_a_stand_in_reading_from_the_end_has_joined_only_once_it_has_partitions_of_the_topics_it_must_see():
    """The soak's location stand-in had partitions of older networks' work topics, so it had joined; the new
    network's topics came at its next metadata refresh, and the work written meanwhile was skipped (19 orders
    never shipped in a 30-minute soak against a running OMS)."""
    class StandIn:
        def __init__(self, *topics: str):
            self._consumer = SimpleNamespace(assignment=lambda: {TopicPartition(t, 0) for t in topics})

    new_work = {"fulfillment.work.v1.NEW-WH1", "fulfillment.work.v1.NEW-WH2"}
    assert not joined(StandIn(), new_work)
    assert not joined(StandIn("fulfillment.work.v1.OLD-WH1", "fulfillment.work.v1.NEW-WH1"), new_work)
    assert joined(StandIn("fulfillment.work.v1.OLD-WH1", *new_work), new_work)
    assert joined(StandIn("payments.commands.v1"))
