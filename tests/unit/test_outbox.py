"""What the relay sets aside and what it retries."""

from aiokafka.errors import (
    KafkaConnectionError,
    MessageSizeTooLargeError,
    OutOfOrderSequenceNumber,
    ProducerFenced,
    RecordTooLargeError,
    TopicAuthorizationFailedError,
)

from shared.messaging.outbox import UNPUBLISHABLE


def test_only_what_is_wrong_with_the_message_itself_sets_it_aside():
    assert isinstance(MessageSizeTooLargeError(), UNPUBLISHABLE)
    assert isinstance(RecordTooLargeError(), UNPUBLISHABLE)


def test_a_lost_producer_sequence_an_outage_or_a_missing_right_is_retried():
    """The broker-restart fault test found OutOfOrderSequenceNumber (not retriable in aiokafka) parking the
    replies a broker restart caught in flight: the orders behind them never settled."""
    for error in (OutOfOrderSequenceNumber(), ProducerFenced(), KafkaConnectionError(), TopicAuthorizationFailedError()):
        assert not isinstance(error, UNPUBLISHABLE), error
