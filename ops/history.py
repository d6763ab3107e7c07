"""Reading a topic's history: every record from the beginning (or from given offsets) up to where the topic ended
when we looked."""

from collections.abc import AsyncIterator

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.structs import ConsumerRecord

from shared.contracts.topics import PARTITIONS
from shared.settings import Settings


async def records(settings: Settings, topic: str, since: dict[int, int] | None = None) -> AsyncIterator[ConsumerRecord]:
    """`since` maps partitions to the offset to start from (see `end_offsets`)."""
    consumer = AIOKafkaConsumer(**settings.kafka_login().aiokafka(), enable_auto_commit=False)
    await consumer.start()
    try:
        partitions = [TopicPartition(settings.topic(topic), p) for p in range(PARTITIONS)]
        consumer.assign(partitions)
        if since is None:
            await consumer.seek_to_beginning()
        else:
            for partition in partitions:
                consumer.seek(partition, since[partition.partition])
        ends = await consumer.end_offsets(partitions)
        while [p for p in partitions if await consumer.position(p) < ends[p]]:
            for batch in (await consumer.getmany(timeout_ms=500)).values():
                for record in batch:
                    yield record
    finally:
        await consumer.stop()


async def end_offsets(settings: Settings, topic: str) -> dict[int, int]:
    """Where each partition of the topic ends now."""
    consumer = AIOKafkaConsumer(**settings.kafka_login().aiokafka(), enable_auto_commit=False)
    await consumer.start()
    try:
        ends = await consumer.end_offsets([TopicPartition(settings.topic(topic), p) for p in range(PARTITIONS)])
        return {tp.partition: offset for tp, offset in ends.items()}
    finally:
        await consumer.stop()
