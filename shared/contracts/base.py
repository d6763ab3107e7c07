"""The envelope every message travels in, and the base of every command and event.

The envelope uses CloudEvents attribute names (structured JSON mode): id, type, source, time, subject,
plus correlationid/causationid extensions. `subject` is the order id for order-scoped messages and is
also the Kafka key, so all work for one order stays on one partition, in order.
"""

from datetime import UTC, datetime
from functools import cache
from typing import Annotated, Any, ClassVar, Literal
from uuid import UUID, uuid4

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError, create_model
from pydantic_core import InitErrorDetails, PydanticCustomError

from .topics import PARTY_FIELDS, PARTY_READ_TOPICS

# Identifiers and header-like fields: printable, bounded (they are echoed in keys, logs and answers).
NO_CONTROL_CHARACTERS = r"^[^\x00-\x1f\x7f]*$"


class Contract(BaseModel):
    """A versioned command or event. Subclasses are registered with @contract and name their topic."""

    # No number in a message is infinite or not a number (JSON has neither; a number past a float's range reads as
    # one): allowed, the one-pass reading took a 401-digit integer for -inf where the general one refused it.
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    message_type: ClassVar[str]
    topic: ClassVar[str]

    def key(self) -> str:
        """The Kafka key: the order id for order-scoped messages."""
        return str(getattr(self, "order_id"))

    def party(self) -> str | None:
        """The outside party a message on a topic read per party (topics.PARTY_READ_TOPICS) is for, when the
        message names it (its `channel`, its `location_id`); otherwise its publisher does (UnitOfWork.emit)."""
        kind = PARTY_READ_TOPICS.get(self.topic)
        return self.field(PARTY_FIELDS[kind]) if kind else None

    def field(self, name: str) -> Any:
        """The field's value; None if this contract has no such field. (`getattr(self, name, None)` asks pydantic,
        which raises and formats an AttributeError for a missing one: ~2 µs, on every message consumed.)"""
        return getattr(self, name) if name in type(self).model_fields else None


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


def _utc_unless_said(moment: datetime) -> datetime:
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


# CloudEvents asks for RFC 3339 (with an offset); a client that leaves it out is taken to mean UTC rather than
# refused, so that every consumer compares and stores its times alike.
Moment = Annotated[datetime, AfterValidator(_utc_unless_said)]


class Attributes(BaseModel):
    # The envelope without its data: what a consumer keeps of it once the payload is validated.
    model_config = ConfigDict(extra="forbid", frozen=True)

    specversion: Literal["1.0"] = "1.0"
    id: UUID = Field(default_factory=uuid4, description="Unique message id; consumers deduplicate on it")
    type: str = Field(max_length=200, pattern=NO_CONTROL_CHARACTERS,
                      description="Message type, e.g. oms.capture.PlaceOrder.v1")
    source: str = Field(max_length=200, pattern=NO_CONTROL_CHARACTERS,
                        description="Producer, e.g. oms/inventory or channel/web")
    time: Moment = Field(default_factory=lambda: datetime.now(UTC))
    subject: str | None = Field(None, max_length=200, pattern=NO_CONTROL_CHARACTERS,
                                description="The order id for order-scoped messages")
    correlationid: str = Field(min_length=1, max_length=200, pattern=NO_CONTROL_CHARACTERS,
                               description="Shared by every message of one order's flow")
    causationid: str | None = Field(None, max_length=200, pattern=NO_CONTROL_CHARACTERS,
                                    description="Id of the message that caused this one")
    datacontenttype: Literal["application/json"] = "application/json"


class Envelope(Attributes):
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


def encode(payload: Contract, *, source: str, correlation_id: str,
           causation_id: str | None = None) -> tuple[Attributes, bytes]:
    """The bytes `wrap(...).model_dump_json()` makes, without the payload's detour through a dict of JSON values
    that the envelope validates and serialises again: the attributes and the payload serialised once each."""
    attributes = Attributes(type=payload.message_type, source=source, subject=payload.key(),
                            correlationid=correlation_id, causationid=causation_id)
    head = attributes.__pydantic_serializer__.to_json(attributes)
    return attributes, head[:-1] + b',"data":' + payload.__pydantic_serializer__.to_json(payload) + b"}"


@cache
def typed_envelope(model: type[Contract]) -> type[Attributes]:
    """An envelope whose data is `model`: attributes and payload validated in one pass (its `data` is the
    payload)."""
    return create_model(f"{model.__name__}Envelope", __base__=Attributes,
                        type=(Literal[model.message_type], ...), data=(model, ...))


def refuse_nul_characters(model: type[Contract], data: object) -> None:
    """NUL is valid JSON but no contract field may carry it (Postgres text refuses it): report every place it
    occurs as a validation error of `model`, so the sender gets the usual reason codes."""
    errors = [InitErrorDetails(type=PydanticCustomError("nul_character", "NUL characters are not allowed"),
                               loc=path, input="") for path in _nul_paths(data, ())]
    if errors:
        raise ValidationError.from_exception_data(model.__name__, errors)


def _nul_paths(value: object, path: tuple[str | int, ...]) -> list[tuple[str | int, ...]]:
    if isinstance(value, str):
        return [path] if "\x00" in value else []
    if isinstance(value, dict):
        return [p for k, v in value.items() for p in _nul_paths(v, (*path, k))]
    if isinstance(value, list):
        return [p for i, v in enumerate(value) for p in _nul_paths(v, (*path, i))]
    return []


def printable(text: str, limit: int) -> str:
    """Text we echo or store about untrusted input: bounded, and without NUL, which Postgres refuses."""
    text = text.replace("\x00", "\ufffd")
    return text if len(text) <= limit else text[:limit] + f"... ({len(text) - limit} more characters)"
