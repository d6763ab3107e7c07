"""Offsets committed beside consuming (shared/messaging/offsets.py), on a real broker: what is committed is what
was applied, never the consumer's position past it; notes made within an interval go in one commit; a batch
that was not applied is read again; before a rebalance takes partitions away, what was applied is committed."""

import asyncio
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from ops.waiting import eventually
from shared.messaging.offsets import CommitBeforeRevocation, OffsetCommitter, rewind
from shared.messaging.outbox import make_producer
from shared.messaging.topics import delete_topics, ensure_topics

TOPIC = "test.offsets.v1"


async def test_what_was_applied_is_committed_in_one_commit_and_an_unapplied_batch_is_read_again(config):
    async with records_on_a_topic(config, 10) as (group, admin):
        consumer = AIOKafkaConsumer(config.topic(TOPIC), **config.kafka_login().aiokafka(), group_id=group,
                                    auto_offset_reset="earliest", enable_auto_commit=False)
        await consumer.start()
        try:
            records = await read(consumer, 10)
            committer = OffsetCommitter(lambda: consumer, group, interval=0.2)
            commits = []
            real_commit = consumer.commit

            async def counted(offsets):
                await real_commit(offsets)
                commits.append(dict(offsets))
            consumer.commit = counted

            committer.applied(records[:3])
            committer.applied(records[3:6])
            gone = TopicPartition(config.topic("test.not-assigned.v1"), 0)
            committer.pending[gone] = 7  # a partition the group took away meanwhile: left out, no error
            task = asyncio.create_task(committer.run())
            try:
                await eventually(lambda: bool(commits), timeout=10, what="a commit")
                assert await committed(admin, group, records[0]) == records[5].offset + 1, \
                    "what was applied, not the position (all ten read)"
                assert commits == [{partition_of(records[0]): records[5].offset + 1}]

                rewind(consumer, records[6:])  # these were not applied: read again from the first of them
                again = await read(consumer, 4)
                assert [r.value for r in again] == [b"6", b"7", b"8", b"9"]
                committer.applied(again)
                await eventually(lambda: len(commits) == 2, timeout=10, what="the second commit")
                assert await committed(admin, group, records[0]) == records[9].offset + 1
            finally:
                task.cancel()
        finally:
            await consumer.stop()


async def test_before_a_rebalance_takes_partitions_away_what_was_applied_is_committed(config):
    async with records_on_a_topic(config, 5) as (group, admin):
        login = config.kafka_login().aiokafka()
        first = AIOKafkaConsumer(**login, group_id=group, auto_offset_reset="earliest", enable_auto_commit=False)
        committer = OffsetCommitter(lambda: first, group, interval=3600)  # no commit but the rebalance's
        first.subscribe([config.topic(TOPIC)], listener=CommitBeforeRevocation(committer))
        second = AIOKafkaConsumer(config.topic(TOPIC), **login, group_id=group, auto_offset_reset="earliest",
                                  enable_auto_commit=False)
        await first.start()
        try:
            records = await read(first, 5)
            committer.applied(records[:3])
            await second.start()  # joins the group: the first gives up its partitions, or some of them

            async def applied_committed() -> bool:
                await first.getmany(timeout_ms=100)  # keeps the first in the group while it rebalances
                return await committed(admin, group, records[0]) == records[2].offset + 1
            await eventually(applied_committed, timeout=60, what="the applied offsets committed at the rebalance")
        finally:
            await second.stop()
            await first.stop()


@asynccontextmanager
async def records_on_a_topic(config, count: int) -> AsyncIterator[tuple[str, AIOKafkaAdminClient]]:
    """`count` records under one key on a fresh topic; a group id of its own, and an admin client to read what
    the group committed."""
    await ensure_topics(config, names=[TOPIC])
    producer = make_producer(config.kafka_login(), "test-offsets")
    admin = AIOKafkaAdminClient(**config.kafka_login().aiokafka())
    await producer.start()
    await admin.start()
    try:
        for n in range(count):
            await producer.send_and_wait(config.topic(TOPIC), str(n).encode(), b"one-key")
        yield f"offsets-{uuid.uuid4().hex[:6]}", admin
    finally:
        await admin.close()
        await producer.stop()
        await delete_topics(config, names=[TOPIC])


async def read(consumer: AIOKafkaConsumer, count: int) -> list[ConsumerRecord]:
    records: list[ConsumerRecord] = []

    async def all_read() -> bool:
        records.extend(r for batch in (await consumer.getmany(timeout_ms=500)).values() for r in batch)
        return len(records) >= count
    await eventually(all_read, timeout=30, what=f"{count} records")
    return records


def partition_of(record: ConsumerRecord) -> TopicPartition:
    return TopicPartition(record.topic, record.partition)


async def committed(admin: AIOKafkaAdminClient, group: str, record: ConsumerRecord) -> int | None:
    """What the group committed on the record's partition."""
    partition = partition_of(record)
    offsets = await admin.list_consumer_group_offsets(group, partitions=[partition])
    return offsets[partition].offset if partition in offsets else None
