"""Reading a topic's history: every record from the beginning (or from given offsets) up to where the topic ended
when we looked."""

from collections.abc import AsyncIterator
from datetime import datetime

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.structs import ConsumerRecord

from shared.contracts.topics import PARTITIONS
from shared.settings import Settings


async def records(settings: Settings, topic: str, since: dict[int, int] | None = None,
                  principal: str | None = None) -> AsyncIterator[ConsumerRecord]:
    """`since` maps partitions to the offset to start from (see `end_offsets`, `offsets_at`); `principal`: log in
    as another than ops."""
    consumer = _consumer(settings, principal)
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


async def records_behind(admin: AIOKafkaAdminClient, group: str, ends: dict[TopicPartition, int]) -> int:
    """How many of the records before `ends` the consumer group has yet to commit (having applied them)."""
    committed = await admin.list_consumer_group_offsets(group, partitions=list(ends))
    return sum(max(end - max(committed[tp].offset if tp in committed else 0, 0), 0) for tp, end in ends.items())


async def offsets_at(settings: Settings, topic: str, when: datetime, principal: str | None = None) -> dict[int, int]:
    """Where each partition's first record written at or after `when` is (its end if there is none)."""
    consumer = _consumer(settings, principal)
    await consumer.start()
    try:
        partitions = [TopicPartition(settings.topic(topic), p) for p in range(PARTITIONS)]
        found = await consumer.offsets_for_times({p: int(when.timestamp() * 1000) for p in partitions})
        ends = await consumer.end_offsets(partitions)
        return {p.partition: found[p].offset if found[p] else ends[p] for p in partitions}
    finally:
        await consumer.stop()


def _consumer(settings: Settings, principal: str | None) -> AIOKafkaConsumer:
    login = settings.kafka_login(principal) if principal else settings.kafka_login()
    return AIOKafkaConsumer(**login.aiokafka(), enable_auto_commit=False)
