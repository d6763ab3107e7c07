"""The ops console's reading of Kafka and the database on a real broker: each consumer instance of a service's
group with the partitions it owns, their lag and the group's state, as the topics page shows them; the dead
letters page by page, newest first, filtered, with the totals per reason from the services' own tables."""

import asyncio
import base64
import re
import time
import uuid
from contextlib import AsyncExitStack, asynccontextmanager, contextmanager
from datetime import UTC, datetime
from html import unescape

from aiokafka import AIOKafkaConsumer
from fastapi.testclient import TestClient

from ops.client import client
from ops.console import model
from ops.console.app import Console, build_app
from ops.console.audit import AuditLog
from ops.console.auth import Sessions
from ops.console.letters import PAGE_SIZE
from ops.console.sampler import Sampler
from ops.waiting import eventually
from shared.contracts import wrap
from shared.contracts.ops import DeadLetter
from shared.contracts.topics import DEAD_LETTERS, ORDER_EVENTS, PARTITIONS
from shared.messaging.service import consumer_group
from shared.messaging.topics import ensure_topics

RECORDS = 12


@asynccontextmanager
async def instance(config, topic: str, group: str, number: int):
    """A consumer in notification's group as the service's instance `number` joins it (static membership),
    polling as the service does, committing nothing."""
    consumer = AIOKafkaConsumer(config.topic(topic), **config.kafka_login().aiokafka(),
                                group_id=group, group_instance_id=f"{group}-{number}", enable_auto_commit=False,
                                auto_offset_reset="earliest", session_timeout_ms=6000, heartbeat_interval_ms=500)
    await consumer.start()
    polling = asyncio.create_task(poll(consumer))
    try:
        yield consumer
    finally:
        polling.cancel()
        await asyncio.gather(polling, return_exceptions=True)
        await consumer.stop()


async def poll(consumer: AIOKafkaConsumer) -> None:
    while True:
        await consumer.getmany(timeout_ms=200)


async def rows_of(sampler: Sampler, group: str) -> list[model.InstanceRow]:
    sample = await sampler.take()
    return [row for row in model.instances(sample.groups, sample.lags) if row.group == group]


async def test_two_instances_of_a_service_each_show_their_partitions_and_one_stopped_disappears(config, tmp_path):
    topic = f"{ORDER_EVENTS}.console{uuid.uuid4().hex[:8]}"  # a channel's own: nothing else reads or writes it
    await ensure_topics(config, names=[topic])
    group = consumer_group("notification", topic)
    unprefixed = group[len(config.topic_prefix):]
    async with client(config, "ops/test") as ops:
        for n in range(RECORDS):
            await ops.send_raw(topic, b"{}", f"key-{n}-{uuid.uuid4()}")
    sampler = Sampler(config, tmp_path, 1)

    async with AsyncExitStack() as running:
        await running.enter_async_context(instance(config, topic, group, 1))
        second = await running.enter_async_context(instance(config, topic, group, 2))

        async def both_stable():
            rows = await rows_of(sampler, unprefixed)
            stable = len(rows) == 2 and all(r.state == "Stable" and r.partitions for r in rows)
            return rows if stable else None

        rows = await eventually(both_stable, timeout=60, interval=0.5, what="two members, both assigned")
        assert [(r.service, r.instance) for r in rows] == [("notification", "1"), ("notification", "2")]
        owned = [p for r in rows for _, parts in r.partitions for p, _ in parts]
        assert sorted(owned) == list(range(PARTITIONS)), "every partition owned by exactly one instance"
        assert all(owned_topic == topic for r in rows for owned_topic, _ in r.partitions)
        assert sum(r.lag for r in rows) == RECORDS, "nothing committed: every record waits, on its owner's row"
        assert all(r.host == "127.0.0.1" for r in rows)

        await second.stop()  # a static member does not leave: it is gone once its session times out

        async def first_alone():
            rows = await rows_of(sampler, unprefixed)
            return rows if [(r.instance, r.state) for r in rows] == [("1", "Stable")] else None

        [alone] = await eventually(first_alone, timeout=60, interval=0.5, what="instance 2 gone")
        assert sorted(p for _, parts in alone.partitions for p, _ in parts) == list(range(PARTITIONS))
        assert alone.lag == RECORDS

    async def empty():
        rows = await rows_of(sampler, unprefixed)
        return rows if [(r.instance, r.state) for r in rows] == [(None, "Empty")] else None

    [nobody] = await eventually(empty, timeout=60, interval=0.5, what="the group empty")
    assert nobody.lag == RECORDS and nobody.partitions == ()


async def test_the_dead_letters_page_pages_through_the_topic_and_totals_come_from_the_services_tables(
        config, admin, tmp_path):
    """The session's other tests write dead letters too: these come from a source topic and with reasons of
    their own, and only they are counted."""
    run = uuid.uuid4().hex[:8].upper()
    source, bad, worse = f"console-test-{run}", f"INVALID_{run}", f"NOT_JSON_{run}"
    newest = int(time.time() * 1000)
    sent = [letter(n, source, bad if n >= 5 else worse) for n in range(LETTERS)]
    async with client(config, "ops/test") as ops:
        for n, item in enumerate(sent):
            envelope = wrap(item, source="ops/test", correlation_id=str(uuid.uuid4()))
            await ops.producer.send_and_wait(config.topic(DEAD_LETTERS), envelope.model_dump_json().encode(),
                                             item.key().encode(), timestamp_ms=newest - (LETTERS - n) * 1000)
    for item in sent:
        await admin.execute(
            f"INSERT INTO {item.consumer.split('.')[1]}.dead_letters (event_id, consumer, source_topic, "
            "source_partition, source_offset, reason, detail, original_value, failed_at) "
            "VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)", uuid.uuid4(), item.consumer, item.source_topic,
            item.source_partition, item.source_offset, item.reason, item.detail, b"{}", item.failed_at)

    with console_app(config, tmp_path) as app:
        first = app.get(f"/ops/dead-letters?reason={bad}")
        assert offsets(first.text, source) == list(range(LETTERS - 1, LETTERS - 1 - PAGE_SIZE, -1)), "newest first"
        mine = {key: n for key, n in totals(first.text).items() if key[1] in (bad, worse)}
        assert mine == {("capture", bad): LETTERS - 5, ("fulfillment", worse): 5}
        second = app.get(older(first.text))
        third = app.get(older(second.text))
        assert offsets(second.text, source) == list(range(LETTERS - 1 - PAGE_SIZE, LETTERS - 1 - 2 * PAGE_SIZE, -1))
        assert offsets(third.text, source) == [] and "No dead letter matching older." in third.text
        assert 'id="newest"' in third.text

        not_json = app.get(f"/ops/dead-letters?reason={worse}")
        assert offsets(not_json.text, source) == [4, 3, 2, 1, 0]
        assert offsets(app.get("/ops/dead-letters?service=fulfillment").text, source) == [4, 3, 2, 1, 0]
        assert offsets(app.get("/ops/dead-letters").text, source)[:3] == [44, 43, 42], "unfiltered: the newest"

        [ref] = re.findall(r'data-ref="([^"]+)"', not_json.text)[:1]
        resolved = app.post("/ops/dead-letters/resolve", data={"letter": ref, "csrf": csrf(not_json.text),
                                                               "reason": worse})
        assert resolved.status_code == 303 and "1+marked+resolved" in resolved.headers["location"]
        assert offsets(app.get(resolved.headers["location"]).text, source) == [3, 2, 1, 0]


LETTERS = 45


def letter(n: int, source: str, reason: str) -> DeadLetter:
    service = "fulfillment" if reason.startswith("NOT_JSON") else "capture"
    return DeadLetter(consumer=f"oms.{service}.{source}", source_topic=source,
                      source_partition=n % PARTITIONS, source_offset=n, reason=reason, detail=f"letter {n}",
                      original_key_b64=None, original_value_b64=base64.b64encode(b"{}").decode(),
                      failed_at=datetime.now(UTC))


@contextmanager
def console_app(config, tmp_path):
    sessions = Sessions("a-console-password", "a-session-secret-for-this-test")
    console = Console(config, sessions, Sampler(config, tmp_path, 60), AuditLog(tmp_path / "audit.jsonl"))
    with TestClient(build_app(console), follow_redirects=False) as app:
        app.post("/ops/login", data={"operator": "Olga", "password": "a-console-password", "next": "/ops/topics"})
        yield app


def offsets(html: str, source: str) -> list[int]:
    """The source offsets of the letters from `source` listed, in their order (letter n came from offset n)."""
    return [int(p.rsplit("/", 1)[1]) for p in re.findall(r'data-position="([^"]+)"', html)
            if p.startswith(source + "/")]


def totals(html: str) -> dict[tuple[str, str], int]:
    table = html.split('id="totals"', 1)[1].split("</table>", 1)[0]
    return {(s, r): int(n) for s, r, n in re.findall(
        r'data-service="([^"]+)" data-reason="([^"]+)">.*?<td class="count">(\d+)</td>', table, re.S)}


def older(html: str) -> str:
    return unescape(re.search(r'<a href="([^"]+)" id="older">', html).group(1))


def csrf(html: str) -> str:
    return re.search(r'name="csrf" value="([^"]+)"', html).group(1)
