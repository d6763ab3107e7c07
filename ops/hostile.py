"""Hostile messages for `oms fuzz`, generated from the contracts: every way a producer can get a message wrong.

Every hostile message must be refused by the OMS — dead-lettered with a reason, answered with reason codes, or
dropped as a duplicate id — so a candidate that the contracts would accept is thrown away and made again
(`refused_by_contracts`). A well-formed command with random data is not hostile (a `ReceiveStock` just adds
stock), so the only well-formed messages made here refer to orders that do not exist, on topics where the
consumer must look the order up. Plain generators from one seeded `random.Random` rather than hypothesis: the
same seed gives the same kinds and contents (only ids and names differ per run, since consumers remember ids),
and a hundred thousand messages take seconds to make.
"""

import copy
import json
import random
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from decimal import Decimal
from types import UnionType
from typing import Annotated, Any, Literal, Union, get_args, get_origin

from pydantic import BaseModel, ValidationError

from shared.contracts import REGISTRY, Contract, Envelope
from shared.contracts.base import refuse_nul_characters
from shared.contracts.orders import OrderEditRefused, OrderRejected, PlaceOrder
from shared.messaging.consumer import InvalidPayloadHook

# Effects a message must have: applied (valid), dead-lettered, dead-lettered and answered to the channel (an
# OrderRejected, or an edit's OrderEditRefused), or nothing at all because its envelope id was already used.
EFFECT, DEAD_LETTER, REJECTED, DEDUPLICATED = "effect", "dead letter", "answered", "deduplicated"

MAX_VALUE_BYTES = 1_000_000  # under the broker's 1 MiB record limit, with room for key, headers and overhead
HUGE_BYTES = (100_000, 900_000)

NASTY_STRINGS = ["\x00", "a\x00b", "\x01\x02\x1b[31m\x7f", "\u202e\u200b\ufeff", "\ud800", "\udfff", "😀" * 3,
                 "'; DROP TABLE orders; --", "%s%n%x", "\\", '"', "\r\n\t", "\u0000\u0000", "null", ""]
WRONG_VALUES: list[Any] = [None, True, [], {}, "", "x", 0, -1, 1.5, 10**400, -10**400, float("inf"), float("nan"),
                           [[[[]]]], {"$ref": "#"}]

# Values a valid sample needs where a plain string would break a pattern.
FIELD_VALUES = {"sku": "FZ-SKU", "backorder_skus": "FZ-SKU", "location_id": "FZ-LOC", "store_id": "FZ-STORE",
                "channel": "web",
                "currency": "EUR", "country": "DE", "email": "fuzz@example.com",
                "purchase_order_number": "PO-0123456789ABCDEF", "address": "fuzz@example.com",
                "from_address": "orders@fuzz.example", "webhook_url": "https://fuzz.example/hook",
                "webhook_secret": "whsec_" + "A" * 43 + "=", "locale": "en"}


@dataclass
class Message:
    topic: str  # without the run's topic prefix
    kind: str
    expect: str
    value: bytes | None
    key: bytes | None = None
    headers: list[tuple[str, bytes | None]] = field(default_factory=list)
    envelope_id: str | None = None  # set when the value is a valid envelope, whose id a duplicate can reuse
    ref: tuple[str, ...] | None = None  # (channel, channel order id[, answer_key's rest]) or ("receipt", receipt id)
    partition: int | None = None
    message_type: str | None = None  # a valid envelope's type, which a duplicate keeps (the same consumers read it)


def sample(model: type[BaseModel], new_id: Callable[[], uuid.UUID]) -> dict[str, Any]:
    """A valid instance of a contract (or value type) as JSON data, from its field types."""
    return {name: _sample_value(name, info.annotation, new_id) for name, info in model.model_fields.items()}


def _sample_value(name: str, annotation: Any, new_id: Callable[[], uuid.UUID]) -> Any:
    origin, args = get_origin(annotation), get_args(annotation)
    if origin is Annotated:
        return _sample_value(name, args[0], new_id)
    if origin is Literal:
        return args[0]
    if origin in (Union, UnionType):
        return _sample_value(name, next(a for a in args if a is not type(None)), new_id)
    if origin is list:
        return [_sample_value(name, args[0], new_id)]
    if origin is dict:
        return {}
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return sample(annotation, new_id)
    simple = {uuid.UUID: lambda: str(new_id()), datetime: lambda: datetime.now(UTC).isoformat(),
              date: lambda: datetime.now(UTC).date().isoformat(),
              bool: lambda: True, int: lambda: 1, float: lambda: 1.0, Decimal: lambda: "1.00"}
    if annotation in simple:
        return simple[annotation]()
    return FIELD_VALUES.get(name, f"fuzz-{name}")


def answer_key(answer: OrderRejected | OrderEditRefused) -> tuple[str, str, str, str]:
    """What tells one answer to a refused message from another: the order, the answer's type, an edit's id."""
    return answer.channel, answer.channel_order_id, answer.message_type, getattr(answer, "edit_id", "")


def refused_by_contracts(topic: str, handled: set[type[Contract]], value: bytes | None) -> bool:
    """Whether the contracts alone say the consumer of `topic` (handling `handled`) must refuse these bytes."""
    if not value:
        return True
    try:
        envelope = Envelope.model_validate_json(value)
    except ValidationError:
        return True
    model = REGISTRY.get(envelope.type)
    if model is None or model.topic != topic:
        return True
    if model not in handled:
        return False  # another reader's message on this topic: skipping it is right, so it is not hostile
    return _payload_error(model, envelope.data) is not None


def _payload_error(model: type[Contract], data: dict[str, Any]) -> ValidationError | None:
    try:
        model.model_validate(data)
        refuse_nul_characters(model, data)
    except ValidationError as error:
        return error
    return None


class HostileGenerator:
    """Makes hostile messages for one consumed topic at a time.

    `handled` maps each consumed topic to the contracts its consumer handles; `lookups` maps a topic to the
    contracts whose handler must find an existing order (a well-formed one about an unknown order is refused);
    `answers` maps a topic to its consumer's hook that answers an invalid payload (capture's OrderRejected).
    `unread_when` names the payload flag under which a looked-up contract's consumer skips it (Subscription.
    skipped_when): off in a message about an unknown order, which must be read to be refused.
    `tag` names what a run creates (channel order ids): unique per run, like the envelope ids.
    """

    def __init__(self, rng: random.Random, tag: str, handled: dict[str, set[type[Contract]]],
                 lookups: dict[str, list[type[Contract]]], answers: dict[str, InvalidPayloadHook],
                 unread_when: dict[type[Contract], str] | None = None):
        self.rng = rng
        self.tag = tag
        self.salt = uuid.uuid4().int  # ids differ per run (consumers remember ids), all else follows the seed
        self.handled = handled
        self.lookups = lookups
        self.unread_when = unread_when or {}
        self.answers = answers
        self.serial = 0
        self.kinds: dict[str, tuple[float, Callable[[str], Message]]] = {
            "not JSON": (10, self.not_json),
            "JSON, not an object": (4, self.not_an_object),
            "invalid envelope": (14, self.invalid_envelope),
            "deep nesting": (3, self.deep_nesting),
            "unknown type": (8, self.unknown_type),
            "invalid payload": (20, self.invalid_payload),
            "valid type, wrong topic": (10, self.wrong_topic),
            "unknown order": (10, self.unknown_order),
            "empty value": (3, self.empty),
            "huge string": (0.5, self.huge),
            "NUL and control characters": (8, self.control_characters),
            "invalid UTF-8": (5, self.invalid_utf8),
            "hostile headers": (4, self.hostile_headers),
            "NUL in an otherwise valid order": (3, self.nul_in_order),
        }

    def kinds_for(self, topic: str) -> list[tuple[str, float]]:
        unusable = set()
        if not self.lookups.get(topic):
            unusable.add("unknown order")
        if PlaceOrder not in self.handled[topic]:
            unusable.add("NUL in an otherwise valid order")
        return [(kind, weight) for kind, (weight, _) in self.kinds.items() if kind not in unusable]

    def make(self, topic: str, kind: str) -> Message:
        """A message of this kind; made again until the contracts say it must be refused."""
        make = self.kinds[kind][1]
        while True:
            message = make(topic)
            if kind != "unknown order" and not refused_by_contracts(topic, self.handled[topic], message.value):
                continue
            message.key = message.key if message.key is not None else self.hostile_key()
            return message

    # --- the kinds -------------------------------------------------------------------------------------------

    def not_json(self, topic: str) -> Message:
        rng = self.rng
        valid = self.encode(self.envelope(topic, self.invalid_data(topic)))
        value = rng.choice([
            rng.randbytes(rng.randint(1, 2000)),
            valid[:rng.randint(1, len(valid) - 1)],
            b"\xef\xbb\xbf" + valid,
            valid.replace(b'"specversion"', b"specversion", 1),
            b"{" * rng.randint(1, 50),
            b"NaN", b"{'single': 'quotes'}", b"\x00" * 16,
        ])
        return Message(topic, "not JSON", DEAD_LETTER, value)

    def not_an_object(self, topic: str) -> Message:
        envelope = self.envelope(topic, self.invalid_data(topic))
        value = self.rng.choice([[], None, 42, "text", True, [envelope], 10**400, -0.0])
        return Message(topic, "JSON, not an object", DEAD_LETTER, self.encode(value))

    def invalid_envelope(self, topic: str) -> Message:
        envelope = self.envelope(topic, self.valid_or_invalid_data(topic))
        for _ in range(self.rng.randint(1, 3)):
            name = self.rng.choice([*envelope, "extra"])
            if self.rng.random() < 0.3 and name in envelope:
                del envelope[name]
            else:
                envelope[name] = self.rng.choice([self.wrong_value(), "not-a-uuid", "yesterday", "2.0", "text/xml"])
        return Message(topic, "invalid envelope", DEAD_LETTER, self.encode(envelope))

    def deep_nesting(self, topic: str) -> Message:
        depth = self.rng.randint(100, 20_000)
        opener, closer = self.rng.choice([('{"a":', "}"), ("[", "]")])
        nested = opener * depth + "1" + closer * depth
        envelope = self.envelope(topic, {"x": "NESTED"})
        value = self.encode(envelope).replace(b'"NESTED"', nested.encode())
        return Message(topic, "deep nesting", DEAD_LETTER, value)

    def unknown_type(self, topic: str) -> Message:
        model = self.rng.choice(sorted(self.handled[topic], key=lambda m: m.message_type))
        name = self.rng.choice([model.message_type.replace(".v1", ".v2"), model.message_type.upper(),
                                " " + model.message_type, "", "\x00", f"oms.fuzz.{self.nasty()}.v1"])
        envelope = self.envelope(topic, sample(model, self.new_id), message_type=name)
        return self.with_envelope(topic, "unknown type", envelope)

    def invalid_payload(self, topic: str) -> Message:
        return self.with_envelope(topic, "invalid payload", self.envelope(topic, self.invalid_data(topic)))

    def wrong_topic(self, topic: str) -> Message:
        model = self.rng.choice(sorted((m for m in REGISTRY.values() if m.topic != topic),
                                       key=lambda m: m.message_type))
        envelope = self.envelope(topic, sample(model, self.new_id), message_type=model.message_type)
        return self.with_envelope(topic, "valid type, wrong topic", envelope)

    def unknown_order(self, topic: str) -> Message:
        model = self.rng.choice(self.lookups[topic])
        data = sample(model, self.new_id)
        if model in self.unread_when:
            data[self.unread_when[model]] = False
        envelope = self.envelope(topic, data, message_type=model.message_type)
        return self.with_envelope(topic, "unknown order", envelope)

    def empty(self, topic: str) -> Message:
        if self.rng.random() < 0.5:
            return Message(topic, "empty value", DEAD_LETTER, b"")
        return Message(topic, "empty value", DEAD_LETTER, None, key=b"tombstone")  # Kafka needs a key then

    def huge(self, topic: str) -> Message:
        size = int(self.rng.uniform(*HUGE_BYTES))
        char = self.rng.choice(["x", "ü", "\x01", "😀"])
        envelope = self.envelope(topic, self.invalid_data(topic))
        target, name = self.rng.choice([(envelope, "source"), (envelope, "subject"), (envelope["data"], "extra"),
                                        self.pick_field(envelope["data"])])
        while True:
            target[name] = char * size
            message = self.with_envelope(topic, "huge string", envelope)
            if len(message.value) <= MAX_VALUE_BYTES:
                return message
            size = size * MAX_VALUE_BYTES // len(message.value) - 100

    def control_characters(self, topic: str) -> Message:
        envelope = self.envelope(topic, self.invalid_data(topic))
        self.scatter(envelope["data"], lambda: self.nasty())
        if self.rng.random() < 0.3:
            envelope["source"] = self.nasty()
        return self.with_envelope(topic, "NUL and control characters", envelope)

    def invalid_utf8(self, topic: str) -> Message:
        envelope = self.envelope(topic, self.invalid_data(topic), source="INVALID-UTF8")
        broken = self.rng.choice([b"\xff", b"\xc3\x28", b"\xed\xa0\x80", b"\xf8\x88\x80\x80\x80", b"\xe2\x82"])
        value = self.encode(envelope).replace(b"INVALID-UTF8", b"src" + broken)
        return Message(topic, "invalid UTF-8", DEAD_LETTER, value)

    def hostile_headers(self, topic: str) -> Message:
        kind = self.rng.choice(["not JSON", "invalid envelope", "invalid payload", "empty value"])
        message = self.kinds[kind][1](topic)
        message.kind = "hostile headers"
        message.headers = self.hostile_header_list()
        return message

    def nul_in_order(self, topic: str) -> Message:
        """A valid PlaceOrder but for a NUL, which no field may hold (Postgres text cannot)."""
        data = sample(PlaceOrder, self.new_id)
        data["channel_order_id"] = self.channel_order_id()
        where = self.rng.choice(["channel_order_id", "customer", "address"])
        if where == "channel_order_id":
            data["channel_order_id"] += "\x00"
        elif where == "customer":
            data["customer"]["name"] = "A\x00B"
        else:
            data["delivery"]["address"]["line1"] = "Street\x00 1"
        return self.with_envelope(topic, "NUL in an otherwise valid order",
                                  self.envelope(topic, data, message_type=PlaceOrder.message_type))

    def under_id(self, topic: str, envelope_id: str, message_type: str) -> Message:
        """New hostile content in a valid envelope carrying an id and type already used on this topic. (Under
        another type, a consumer that skipped the first as another service's would rightly read it as new.)"""
        while True:
            message = self.with_envelope(topic, "duplicate id", self.envelope(
                topic, self.invalid_data(topic), message_type=message_type, id=envelope_id))
            if message.envelope_id == envelope_id:
                message.key = self.hostile_key()
                return message

    # --- parts -----------------------------------------------------------------------------------------------

    def envelope(self, topic: str, data: Any, message_type: str | None = None, **overrides: Any) -> dict[str, Any]:
        if message_type is None:
            message_type = self.handled_type(topic).message_type
        return {"specversion": "1.0", "id": str(self.new_id()), "type": message_type, "source": "fuzz",
                "time": datetime.now(UTC).isoformat(), "subject": None,
                "correlationid": str(self.new_id()), "data": data} | overrides

    def with_envelope(self, topic: str, kind: str, envelope: dict[str, Any]) -> Message:
        """A message whose value is this envelope, expecting what the consumer must do with it."""
        value = self.encode(envelope)
        message = Message(topic, kind, DEAD_LETTER, value)
        try:
            parsed = Envelope.model_validate_json(value)
        except ValidationError:
            return message
        message.envelope_id, message.message_type = str(parsed.id), parsed.type
        model = REGISTRY.get(parsed.type)
        error = _payload_error(model, parsed.data) if model in self.handled[topic] else None
        answers = self.answers[topic](parsed, error) if error and topic in self.answers else []
        if answers:
            message.expect = REJECTED
            message.ref = answer_key(answers[0])
        return message

    def handled_type(self, topic: str) -> type[Contract]:
        return self.rng.choice(sorted(self.handled[topic], key=lambda m: m.message_type))

    def invalid_data(self, topic: str) -> dict[str, Any]:
        """A payload for a type this topic's consumer handles, broken in one to three places."""
        while True:
            model = self.handled_type(topic)
            data = self.sample_for(model)
            for _ in range(self.rng.randint(1, 3)):
                self.mutate(data)
            try:
                model.model_validate(data)
            except (ValidationError, ValueError, TypeError):
                return data

    def valid_or_invalid_data(self, topic: str) -> dict[str, Any]:
        return self.sample_for(self.handled_type(topic)) if self.rng.random() < 0.5 else self.invalid_data(topic)

    def sample_for(self, model: type[Contract]) -> dict[str, Any]:
        data = sample(model, self.new_id)
        if model is PlaceOrder:
            data["channel_order_id"] = self.channel_order_id()
        return data

    def channel_order_id(self) -> str:
        self.serial += 1
        return f"{self.tag}-H{self.serial}"

    def mutate(self, data: dict[str, Any]) -> None:
        """One change to a payload somewhere in its tree: drop a field, add one, or give one a wrong value."""
        target, name = self.pick_field(data)
        action = self.rng.random()
        if action < 0.2 and name in target:
            del target[name]
        elif action < 0.35:
            target[self.rng.choice(["extra", self.nasty(), "x" * 300])] = self.wrong_value()
        elif action < 0.5:
            target[name] = self.nasty() * self.rng.randint(1, 400)
        else:
            target[name] = self.wrong_value()

    def pick_field(self, data: dict[str, Any]) -> tuple[dict[str, Any], str]:
        target = data
        while True:
            name = self.rng.choice(list(target) or ["extra"])
            inner = target.get(name)
            if isinstance(inner, list) and inner and isinstance(inner[0], dict):
                inner = inner[0]
            if isinstance(inner, dict) and inner and self.rng.random() < 0.6:
                target = inner
                continue
            return target, name

    def scatter(self, data: dict[str, Any], make: Callable[[], Any]) -> None:
        for _ in range(self.rng.randint(1, 4)):
            target, name = self.pick_field(data)
            target[name] = make()

    def wrong_value(self) -> Any:
        return copy.deepcopy(self.rng.choice(WRONG_VALUES))  # a fresh copy: payloads are mutated in place

    def new_id(self) -> uuid.UUID:
        return uuid.UUID(int=self.rng.getrandbits(128) ^ self.salt, version=4)

    def nasty(self) -> str:
        return "".join(self.rng.choices(NASTY_STRINGS, k=self.rng.randint(1, 4)))

    def hostile_key(self) -> bytes | None:
        return self.rng.choice([None, b"", self.rng.randbytes(8), b"\xff\xfe\x00", str(self.new_id()).encode()])

    def hostile_header_list(self) -> list[tuple[str, bytes | None]]:
        return self.rng.sample([("content-type", b"\xff\xfe"), ("correlation_id", b"\xc3\x28"), ("x-null", None),
                                ("reply_to", b"\x00" * 8), ("", b""), ("x-big", b"h" * 10_000),
                                ("\u00fc\u202e", "🙂".encode()), ("traceparent", b"00-\xff\xfe-01"),
                                ("tracestate", None)], k=self.rng.randint(1, 4))

    def encode(self, value: Any) -> bytes:
        text = json.dumps(value, ensure_ascii=self.rng.random() < 0.5)
        return text.encode("utf-8", "surrogatepass")  # a lone surrogate becomes bytes that are not UTF-8
