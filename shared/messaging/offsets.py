"""Kafka offsets committed beside consuming instead of between batches.

A batch's offsets used to be committed (a broker round trip, awaited) before the next batch could start; at a
few records per batch that is a commit per record on every hop, and the broker's CPU for each. Now a
subscriber notes what it has applied — only after `Consumer.process` returned, so only records whose effect or
dead letter is durable — and a task commits those exact offsets at most every COMMIT_INTERVAL_SECONDS, the
next batch not waiting for it.

What this gives up is where a restarted consumer resumes: up to an interval's records before the last it
applied, delivered again and skipped by the inbox (claimed by event id in the effect's transaction), as after
any crash. Before a rebalance takes partitions away, what was applied is committed first, so their next owner
starts where this one stopped. Never past a record not yet applied: the offsets committed are those noted, not
the consumer's position."""

import asyncio
from collections.abc import Callable, Iterable

from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener, ConsumerRecord, TopicPartition
from aiokafka.errors import CommitFailedError, IllegalStateError

from shared.logging import get_logger

log = get_logger(__name__)

COMMIT_INTERVAL_SECONDS = 0.5


class OffsetCommitter:
    """One consumer's applied offsets, and the task that commits them."""

    def __init__(self, consumer: Callable[[], AIOKafkaConsumer | None], group: str,
                 interval: float = COMMIT_INTERVAL_SECONDS):
        self.consumer = consumer
        self.group = group
        self.interval = interval
        self.pending: dict[TopicPartition, int] = {}  # the next offset to read, per partition
        self._due = asyncio.Event()

    def applied(self, records: Iterable[ConsumerRecord]) -> None:
        for record in records:
            partition = _partition(record)
            self.pending[partition] = max(self.pending.get(partition, 0), record.offset + 1)
        self._due.set()

    async def run(self) -> None:
        while True:
            await self._due.wait()
            await asyncio.sleep(self.interval)
            self._due.clear()
            await self.commit()

    async def commit(self) -> None:
        consumer = self.consumer()
        offsets, self.pending = self.pending, {}
        if consumer is None:
            return
        assigned = consumer.assignment()
        offsets = {partition: offset for partition, offset in offsets.items() if partition in assigned}
        if not offsets:
            return
        try:
            await consumer.commit(offsets)
        except (CommitFailedError, IllegalStateError) as error:
            # The group rebalanced meanwhile: the partitions' owner now goes on from their last commit, and
            # skips by the inbox what this member applied since.
            log.info("consumer.offsets_left_to_new_owner", group=self.group, error=repr(error))
        except Exception as error:  # the broker is away: commit them (or later ones) next time
            for partition, offset in offsets.items():
                self.pending[partition] = max(self.pending.get(partition, 0), offset)
            self._due.set()
            log.warning("consumer.offset_commit_failed", group=self.group, error=repr(error))


class CommitBeforeRevocation(ConsumerRebalanceListener):
    def __init__(self, committer: OffsetCommitter):
        self.committer = committer

    async def on_partitions_revoked(self, revoked: set[TopicPartition]) -> None:
        await self.committer.commit()  # still this generation's member: the broker takes the commit

    async def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None:
        pass


def rewind(consumer: AIOKafkaConsumer | None, records: Iterable[ConsumerRecord]) -> None:
    """Read a batch that was not applied again from its first record on each partition (never skip it)."""
    if consumer is None:
        return
    earliest: dict[TopicPartition, int] = {}
    for record in records:
        partition = _partition(record)
        earliest[partition] = min(earliest.get(partition, record.offset), record.offset)
    assigned = consumer.assignment()
    for partition, offset in earliest.items():
        if partition in assigned:
            consumer.seek(partition, offset)


def _partition(record: ConsumerRecord) -> TopicPartition:
    return TopicPartition(record.topic, record.partition)
