"""The envelope every message travels in, and the base of every command and event.

The envelope uses CloudEvents attribute names (structured JSON mode): id, type, source, time, subject,
plus correlationid/causationid extensions. `subject` is the order id for order-scoped messages and is
also the Kafka key, so all work for one order stays on one partition, in order.
"""

from datetime import UTC, datetime
from typing import Any, ClassVar, Literal
from uuid import UUID, uuid4

from pydantic import BaseModel, ConfigDict, Field


class Contract(BaseModel):
    """A versioned command or event. Subclasses are registered with @contract and name their topic."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    message_type: ClassVar[str]
    topic: ClassVar[str]

    def key(self) -> str:
        """The Kafka key: the order id for order-scoped messages."""
        return str(getattr(self, "order_id"))


REGISTRY: dict[str, type[Contract]] = {}


def contract(message_type: str, topic: str):
    """Register a model under its message type (e.g. `oms.inventory.StockReserved.v1`) and topic."""

    def register(model: type[Contract]) -> type[Contract]:
        if message_type in REGISTRY:
            raise ValueError(f"message type {message_type} registered twice")
        model.message_type = message_type
        model.topic = topic
        REGISTRY[message_type] = model
        return model

    return register


class Envelope(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    specversion: Literal["1.0"] = "1.0"
    id: UUID = Field(default_factory=uuid4, description="Unique message id; consumers deduplicate on it")
    type: str = Field(description="Message type, e.g. oms.capture.PlaceOrder.v1")
    source: str = Field(description="Producer, e.g. oms/inventory or channel/web")
    time: datetime = Field(default_factory=lambda: datetime.now(UTC))
    subject: str | None = Field(None, description="The order id for order-scoped messages")
    correlationid: str = Field(description="Shared by every message of one order's flow")
    causationid: str | None = Field(None, description="Id of the message that caused this one")
    datacontenttype: Literal["application/json"] = "application/json"
    data: dict[str, Any]


def wrap(payload: Contract, *, source: str, correlation_id: str, causation_id: str | None = None) -> Envelope:
    return Envelope(
        type=payload.message_type,
        source=source,
        subject=payload.key(),
        correlationid=correlation_id,
        causationid=causation_id,
        data=payload.model_dump(mode="json"),
    )
