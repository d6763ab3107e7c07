"""A consumer whose group coordination ended on an error of aiokafka's own is revived by the service's health
probe and consumes again (shared/messaging/health.py: revive_coordination). The broker-restart fault test found
fulfillment's location-update consumer failing every fetch with `Unexpected error during coordination
AssertionError()` for good; here the same end is brought about in the coordination routine of a real consumer."""

import re
import uuid

import pytest
from aiokafka import AIOKafkaConsumer
from aiokafka.errors import KafkaError

from ops.waiting import eventually
from shared.messaging.health import revive_coordination
from shared.messaging.outbox import make_producer
from shared.messaging.topics import delete_topics, ensure_topics

TOPIC = "test.revival.v1"


async def test_a_consumer_whose_coordination_ended_is_revived_and_reads_again(config):
    await ensure_topics(config, names=[TOPIC])
    consumer = AIOKafkaConsumer(**config.kafka_login().aiokafka(), group_id=f"revival-{uuid.uuid4().hex[:6]}",
                                auto_offset_reset="earliest", enable_auto_commit=False, metadata_max_age_ms=1000)
    consumer.subscribe(pattern=f"^{re.escape(config.topic(TOPIC))}$")  # as the services' per-party subscriptions
    producer = make_producer(config.kafka_login(), "test-revival")
    await consumer.start()
    await producer.start()
    try:
        await eventually(consumer.assignment, timeout=30, what="the consumer's partitions")
        coordinator = consumer._coordinator
        assert not revive_coordination(consumer, TOPIC), "a running coordination is left alone"

        async def fails() -> None:
            raise AssertionError()  # what aiokafka's own `assert assignment is not None ...` raised

        coordinator.ensure_coordinator_known, known = fails, coordinator.ensure_coordinator_known
        coordinator.request_rejoin()
        await eventually(coordinator._coordination_task.done, timeout=10, what="the coordination to end")
        with pytest.raises(KafkaError, match="Unexpected error during coordination"):
            await consumer.getmany(timeout_ms=100)

        coordinator.ensure_coordinator_known = known
        assert revive_coordination(consumer, TOPIC)
        await producer.send_and_wait(config.topic(TOPIC), b"after", b"k")

        async def read() -> bool:
            batches = await consumer.getmany(timeout_ms=500)
            return any(record.value == b"after" for records in batches.values() for record in records)
        assert await eventually(read, timeout=30, what="the revived consumer to read")
    finally:
        await producer.stop()
        await consumer.stop()
        await delete_topics(config, names=[TOPIC])
