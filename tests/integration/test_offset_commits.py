"""Offsets committed beside consuming (shared/messaging/offsets.py), on a real broker: what is committed is what
was applied, never the consumer's position past it; notes made within an interval go in one commit; a batch
that was not applied is read again."""

import asyncio
import uuid

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from ops.waiting import eventually
from shared.messaging.offsets import OffsetCommitter, rewind
from shared.messaging.outbox import make_producer
from shared.messaging.topics import delete_topics, ensure_topics

TOPIC = "test.offsets.v1"


async def test_what_was_applied_is_committed_in_one_commit_and_an_unapplied_batch_is_read_again(config):
    await ensure_topics(config, names=[TOPIC])
    group = f"offsets-{uuid.uuid4().hex[:6]}"
    consumer = AIOKafkaConsumer(config.topic(TOPIC), **config.kafka_login().aiokafka(), group_id=group,
                                auto_offset_reset="earliest", enable_auto_commit=False)
    producer = make_producer(config.kafka_login(), "test-offsets")
    admin = AIOKafkaAdminClient(**config.kafka_login().aiokafka())
    await producer.start()
    await consumer.start()
    await admin.start()
    try:
        for n in range(10):
            await producer.send_and_wait(config.topic(TOPIC), str(n).encode(), b"one-key")
        records = []

        async def all_read() -> bool:
            records.extend(r for batch in (await consumer.getmany(timeout_ms=500)).values() for r in batch)
            return len(records) == 10
        await eventually(all_read, timeout=30, what="the ten records")
        partition = TopicPartition(records[0].topic, records[0].partition)

        async def committed() -> int | None:
            offsets = await admin.list_consumer_group_offsets(group, partitions=[partition])
            return offsets[partition].offset if partition in offsets else None

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
            assert await committed() == records[5].offset + 1, "what was applied, not the position (all ten read)"
            assert commits == [{partition: records[5].offset + 1}]

            rewind(consumer, records[6:])  # these were not applied: read again from the first of them
            again = []

            async def read_again() -> bool:
                again.extend(r for batch in (await consumer.getmany(timeout_ms=500)).values() for r in batch)
                return len(again) >= 4
            await eventually(read_again, timeout=30, what="the unapplied records again")
            assert [r.value for r in again] == [b"6", b"7", b"8", b"9"]
            committer.applied(again)
            await eventually(lambda: len(commits) == 2, timeout=10, what="the second commit")
            assert await committed() == records[9].offset + 1
        finally:
            task.cancel()
    finally:
        await admin.close()
        await consumer.stop()
        await producer.stop()
        await delete_topics(config, names=[TOPIC])
