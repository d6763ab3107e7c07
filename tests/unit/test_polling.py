"""How consumers poll: back to back (FastStream's batch subscriber sleeps after an empty poll, and a record arriving
meanwhile would wait for the sleep to end on every hop: shared/messaging/service.py, polled_back_to_back), only
the subscriptions off the order's way to fulfilment wait for larger batches (Subscription.batch_wait_ms), and
each batch goes to the runtime as it came (handed_over)."""

import importlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from aiokafka.structs import ConsumerRecord, TopicPartition
from faststream.kafka import KafkaRouter
from faststream.kafka.subscriber import usecase

from ops.fuzz import subscriptions
from services.tracking.app import TIMELINE_TOPICS
from shared.contracts.topics import (FULFILLMENT_EVENTS, NOTIFICATION_COMMANDS, ORDER_EVENTS, ORDER_PURGES,
                                     ROUTING_EVENTS)
from shared.db.bootstrap import SERVICES
from shared.messaging.consumer import OFF_THE_WAY_WAIT_MS, READ_SIDE_WAIT_MS
from shared.messaging.service import BATCH_BYTES, POLL_WAIT_MS, handed_over, polled_back_to_back

ROOT = Path(__file__).resolve().parents[2]


class Consumer:
    """An aiokafka consumer as the poll sees it: what each getmany returns, and how it was asked."""

    def __init__(self, *answers: dict):
        self.answers, self.asked = list(answers), []

    async def getmany(self, timeout_ms: int, max_records: int | None = None) -> dict:
        self.asked.append((timeout_ms, max_records))
        return self.answers.pop(0)


def record(offset: int) -> ConsumerRecord:
    return ConsumerRecord("t", 0, offset, 0, 0, None, b"v", None, 0, 1, [])


@pytest.fixture
def sleeps(monkeypatch) -> list[float]:
    slept: list[float] = []

    async def sleep(seconds: float) -> None:
        slept.append(seconds)

    monkeypatch.setattr(usecase.anyio, "sleep", sleep)
    return slept


def subscriber():
    return KafkaRouter().subscriber("t", batch=True, batch_timeout_ms=POLL_WAIT_MS, max_records=7)


async def test_faststreams_own_poll_sleeps_after_an_empty_one(sleeps):
    """What the override is for; when FastStream stops sleeping, this fails and the override can go."""
    assert await subscriber().get_msg(Consumer({})) == ()
    assert sleeps == [POLL_WAIT_MS / 1000]


async def test_polled_back_to_back_an_empty_poll_returns_at_once_and_records_come_in_order(sleeps):
    consumer = Consumer({}, {TopicPartition("t", 0): [record(1), record(2)], TopicPartition("t", 1): [record(3)]})
    poll = polled_back_to_back(subscriber())
    assert await poll(consumer) == ()
    assert [r.offset for r in await poll(consumer)] == [1, 2, 3]
    assert sleeps == [] and consumer.asked == [(POLL_WAIT_MS, 7)] * 2


def built(service: str) -> list[dict]:
    """How each subscriber of the service polls, built as the service builds itself (in a process of its own:
    building sets up logging and tracing)."""
    script = (f"import json\nfrom shared.messaging.service import build_app\n"
              f"from services.{service}.app import SERVICE\n"
              "print(json.dumps([{'poll': s.get_msg.__qualname__, 'wait_ms': s._connection_args['fetch_max_wait_ms'],"
              " 'min_bytes': s._connection_args['fetch_min_bytes']} for s in build_app(SERVICE).broker.subscribers]))")
    env = {**os.environ, "OMS_KAFKA_BOOTSTRAP": "127.0.0.1:1", f"OMS_{service.upper()}_KAFKA_PASSWORD": "unused",
           "OMS_TRACKING_LINK_SECRET": "a-link-secret-of-thirty-two-chars"}
    done = subprocess.run([sys.executable, "-c", script], env=env, cwd=ROOT, capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


PURGING = ("inventory", "routing", "fulfillment", "notification", "tracking")
OFF_THE_WAY = {("tracking", topic) for topic in TIMELINE_TOPICS} | {
    ("notification", ORDER_EVENTS), ("notification", NOTIFICATION_COMMANDS), ("routing", FULFILLMENT_EVENTS),
    ("capture", ROUTING_EVENTS), ("fulfillment", ROUTING_EVENTS),
    *((name, ORDER_PURGES) for name in PURGING)}


def test_only_subscriptions_off_the_orders_way_wait_for_batches():
    """Reading 200 ms later costs them nothing (capacity counts, routing's decisions that capture does not read on
    a first sourcing, the location kinds a request now carries itself), and the read side (order views, customer
    messages) reads a second later; the CPU they save goes to the confirm path's services, whose every record on it
    is read as soon as it comes."""
    waits = {(name, sub.topic): sub.batch_wait_ms for name, sub in subscriptions() if sub.batch_wait_ms}
    assert waits.keys() == OFF_THE_WAY
    assert {(name, wait) for (name, topic), wait in waits.items() if topic != ORDER_PURGES} == {
        ("tracking", READ_SIDE_WAIT_MS), ("notification", READ_SIDE_WAIT_MS), ("routing", OFF_THE_WAY_WAIT_MS),
        ("capture", OFF_THE_WAY_WAIT_MS), ("fulfillment", OFF_THE_WAY_WAIT_MS)}
    assert {waits[name, ORDER_PURGES] for name in PURGING} == {READ_SIDE_WAIT_MS}  # an hour apart


@pytest.mark.parametrize("service", SERVICES)
def test_every_subscriber_polls_back_to_back_with_its_subscriptions_fetch_settings(service):
    subscribers = built(service)
    definition = importlib.import_module(f"services.{service}.app").SERVICE
    assert {s["poll"] for s in subscribers} == {"polled_back_to_back.<locals>.get_msg"}
    assert sorted((s["wait_ms"], s["min_bytes"]) for s in subscribers) == sorted(
        (sub.batch_wait_ms, BATCH_BYTES) if sub.batch_wait_ms else (500, 1)  # aiokafka's: answered on a first record
        for sub in definition.subscriptions)


async def test_each_polled_batch_goes_to_the_runtime_as_it_came_and_a_failure_does_not_stop_the_polls():
    """FastStream's poll loop hands each batch to `consume_one` (when it stops, this fails): handed_over gives it
    to the runtime without FastStream's per-message stack, which would parse the headers (one that is not UTF-8
    failed a whole batch) and cost three times the runtime's own work on a small batch."""
    polling = subscriber()
    not_utf8 = ConsumerRecord("t", 0, 1, 0, 0, None, b"v", None, 0, 1, [("traceparent", b"\xff\xfe")])
    batches = [(not_utf8,), (record(2), record(3))]
    handed = []

    async def get_msg(consumer) -> tuple:
        if not batches:
            polling.running = False
            return ()
        return batches.pop(0)

    async def consume(records) -> None:
        handed.append(records)
        if len(handed) == 1:
            raise RuntimeError("a failure the runtime let through")

    polling.get_msg, polling.consume_one, polling.running = get_msg, handed_over(polling, consume), True
    await polling._run_consume_loop(object())
    assert handed == [(not_utf8,), (record(2), record(3))]


async def test_no_batch_is_handed_over_once_the_subscriber_stops():
    handed = []

    async def consume(records) -> None:
        handed.append(records)

    stopped = subscriber()
    await handed_over(stopped, consume)((record(1),))
    assert handed == []
