"""Operations: dead letters, with the reason and the original bytes, so a message can be inspected and replayed."""

from datetime import datetime

from pydantic import Field

from .base import Contract, contract
from .topics import DEAD_LETTERS


# A dead letter must itself always be publishable, whatever it carries: the original bytes travel in full up to
# this size (a decompressed record can be far larger than the broker's message limit).
MAX_ORIGINAL_BYTES = 256 * 1024


@contract("oms.ops.DeadLetter.v1", topic=DEAD_LETTERS)
class DeadLetter(Contract):
    consumer: str = Field(description="Consumer group that gave up on the message")
    source_topic: str
    source_partition: int
    source_offset: int
    reason: str = Field(description="Short machine-readable reason, e.g. NOT_JSON, INVALID_ENVELOPE, INVALID_PAYLOAD")
    detail: str = Field(description="What exactly was wrong")
    original_key_b64: str | None
    original_value_b64: str = Field(description="The original bytes, base64; only the first "
                                                "MAX_ORIGINAL_BYTES when original_truncated (the service keeps all)")
    original_size: int = Field(0, description="Length of the original value in bytes")
    original_truncated: bool = False
    failed_at: datetime

    def key(self) -> str:
        return f"{self.source_topic}/{self.source_partition}/{self.source_offset}"


@contract("oms.ops.DeadLetterReplayed.v1", topic=DEAD_LETTERS)
class DeadLetterReplayed(Contract):
    """The audit record of a replay: who sent which dead letter back to its topic, when, under which id."""

    position: str = Field(description="source topic/partition/offset of the dead letter")
    consumer: str
    replayed_by: str = Field(max_length=200)
    replayed_at: datetime
    message_id: str | None = Field(description="Id the replayed envelope carries (the same for every replay of "
                                               "one letter, so the consumer applies it once); None for raw bytes")

    def key(self) -> str:
        return self.position
