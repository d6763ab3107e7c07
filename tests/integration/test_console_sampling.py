"""The ops console's reading of Kafka on a real broker: each consumer instance of a service's group with the
partitions it owns, their lag and the group's state, as the topics page shows them."""

import asyncio
import uuid
from contextlib import AsyncExitStack, asynccontextmanager

from aiokafka import AIOKafkaConsumer

from ops.client import client
from ops.console import model
from ops.console.sampler import Sampler
from ops.waiting import eventually
from shared.contracts.topics import ORDER_EVENTS, PARTITIONS
from shared.messaging.service import consumer_group

RECORDS = 12


@asynccontextmanager
async def instance(config, group: str, number: int):
    """A consumer in notification's group as the service's instance `number` joins it (static membership),
    polling as the service does, committing nothing."""
    consumer = AIOKafkaConsumer(config.topic(ORDER_EVENTS), **config.kafka_login().aiokafka(),
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
    group = consumer_group("notification", ORDER_EVENTS)
    unprefixed = group[len(config.topic_prefix):]
    async with client(config, "ops/test") as ops:
        for n in range(RECORDS):
            await ops.send_raw(ORDER_EVENTS, b"{}", f"key-{n}-{uuid.uuid4()}")
    sampler = Sampler(config, tmp_path, 1)

    async with AsyncExitStack() as running:
        await running.enter_async_context(instance(config, group, 1))
        second = await running.enter_async_context(instance(config, group, 2))

        async def both_stable():
            rows = await rows_of(sampler, unprefixed)
            stable = len(rows) == 2 and all(r.state == "Stable" and r.partitions for r in rows)
            return rows if stable else None

        rows = await eventually(both_stable, timeout=60, interval=0.5, what="two members, both assigned")
        assert [(r.service, r.instance) for r in rows] == [("notification", "1"), ("notification", "2")]
        owned = [p for r in rows for _, parts in r.partitions for p, _ in parts]
        assert sorted(owned) == list(range(PARTITIONS)), "every partition owned by exactly one instance"
        assert all(topic == ORDER_EVENTS for r in rows for topic, _ in r.partitions)
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
