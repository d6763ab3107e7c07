"""What the relay sets aside and what it retries, the partition it sends a key to, and that it stops when told."""

import asyncio
import uuid

import pytest
from aiokafka.errors import (
    KafkaConnectionError,
    MessageSizeTooLargeError,
    OutOfOrderSequenceNumber,
    ProducerFenced,
    RecordTooLargeError,
    TopicAuthorizationFailedError,
)
from aiokafka.partitioner import DefaultPartitioner

from shared.messaging.outbox import UNPUBLISHABLE, OutboxRelay, _partition_by_key


def test_only_what_is_wrong_with_the_message_itself_sets_it_aside():
    assert isinstance(MessageSizeTooLargeError(), UNPUBLISHABLE)
    assert isinstance(RecordTooLargeError(), UNPUBLISHABLE)


def test_a_lost_producer_sequence_an_outage_or_a_missing_right_is_retried():
    """The broker-restart fault test found OutOfOrderSequenceNumber (not retriable in aiokafka) parking the
    replies a broker restart caught in flight: the orders behind them never settled."""
    retriable = (OutOfOrderSequenceNumber(), ProducerFenced(), KafkaConnectionError(), TopicAuthorizationFailedError())
    for error in retriable:
        assert not isinstance(error, UNPUBLISHABLE), error


def test_a_key_goes_to_the_partition_kafkas_default_partitioner_picks_however_often_it_is_sent():
    keys = [str(uuid.uuid4()).encode() for _ in range(500)] + [b"", b"web/W-1", "ü".encode()]
    for partitions in (list(range(1)), list(range(6)), list(range(12))):
        for key in keys * 2:  # the second time from the cache
            assert _partition_by_key(key, partitions, partitions) == DefaultPartitioner()(key, partitions, partitions)
    assert _partition_by_key(None, [0, 1, 2], [2]) == 2  # no key: one of the available partitions


async def test_a_relay_cancelled_as_it_is_woken_stops():
    """A relay waiting for work, cancelled (its service stopping) in the same turn of the loop as a commit wakes
    it: Python 3.11's `asyncio.wait_for` returned the wake and dropped the cancellation, and the relay went on —
    holding its place among the relays, so that another never again found itself alone (a flaky relay test)."""
    relay = OutboxRelay(None, lambda: None, "capture", "")
    waiting = asyncio.create_task(relay._wait_for_work())
    await asyncio.sleep(0)
    relay.wake()
    waiting.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiting
