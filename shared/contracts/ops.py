"""Operations: dead letters, with the reason and the original bytes, so a message can be inspected and replayed."""

from datetime import datetime

from pydantic import Field

from .base import Contract, contract
from .topics import DEAD_LETTERS


@contract("oms.ops.DeadLetter.v1", topic=DEAD_LETTERS)
class DeadLetter(Contract):
    consumer: str = Field(description="Consumer group that gave up on the message")
    source_topic: str
    source_partition: int
    source_offset: int
    reason: str = Field(description="Short machine-readable reason, e.g. NOT_JSON, INVALID_ENVELOPE, INVALID_PAYLOAD")
    detail: str = Field(description="What exactly was wrong")
    original_key_b64: str | None
    original_value_b64: str
    failed_at: datetime

    def key(self) -> str:
        return f"{self.source_topic}/{self.source_partition}/{self.source_offset}"
