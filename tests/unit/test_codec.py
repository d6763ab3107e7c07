"""The envelope codec's fast paths (docs/benchmark.md, "Codec"): the same bytes on the wire, the same reading of
every message, valid or hostile, as the general path."""

import json
from datetime import datetime
import random
import uuid

import pytest
from aiokafka.structs import ConsumerRecord

from ops.fuzz import lookups, subscriptions
from ops.hostile import HostileGenerator, sample
from services.capture.saga import ANSWERED_ELSEWHERE
from shared.contracts import REGISTRY, Envelope
from shared.contracts.base import encode
from shared.contracts.routing import OrderRouted
from shared.contracts.topics import ROUTING_EVENTS
from shared.messaging.consumer import Consumer

CONTRACTS = sorted(REGISTRY.values(), key=lambda m: m.message_type)
SUBSCRIPTIONS = [sub for _, sub in subscriptions()]


def record(topic: str, value: bytes | None, offset: int = 0) -> ConsumerRecord:
    return ConsumerRecord(topic, 0, offset, 0, 0, None, value, None, 0, len(value or b""), [])


@pytest.mark.parametrize("model", CONTRACTS, ids=lambda m: m.__name__)
def test_encode_writes_the_bytes_the_envelope_model_writes(model):
    payload = model.model_validate(sample(model, uuid.uuid4))
    attributes, value = encode(payload, source="oms/test", correlation_id="corr-ü\"1", causation_id=None)
    envelope = Envelope(**attributes.model_dump(), data=payload.model_dump(mode="json"))
    assert value == envelope.model_dump_json().encode()
    assert json.loads(value)["data"] == payload.model_dump(mode="json")


def test_encoded_attributes_are_validated_as_the_envelope_validates_them():
    payload = next(m for m in CONTRACTS).model_validate(sample(next(m for m in CONTRACTS), uuid.uuid4))
    with pytest.raises(ValueError):
        encode(payload, source="oms/test", correlation_id="a\nb")


def _consumer() -> Consumer:
    return Consumer(None, service="test", writes=frozenset(), group="test", settings=None)


def _read(subscription, value: bytes | None, general: bool = False):
    read = _consumer()._read_any if general else _consumer()._read
    return read(subscription, record(subscription.topic, value))


def _same_reading(subscription, value: bytes | None) -> bool:
    """Whether a fast path read the message; if one did, it must have read it as the general path does. The fast
    paths: a type the subscription handles, envelope and payload in one pass; another service's type, skipped
    unread (the general path skips it too, after reading it all)."""
    (fast, fast_payload), (parsed, payload) = _read(subscription, value), _read(subscription, value, general=True)
    if fast.dead_letter is not None or isinstance(fast.envelope, Envelope):
        return False  # the general path's reading (only it dead-letters)
    if fast.inbox_key is None and parsed.dead_letter is not None:  # skipped: the rest is its own consumer's to judge
        assert (fast_payload, payload, parsed.dead_letter[0]) == (None, None, "INVALID_ENVELOPE")
        return True
    assert (fast.inbox_key, fast.dead_letter, fast_payload) == (parsed.inbox_key, parsed.dead_letter, payload)
    if fast.envelope is not None:
        assert fast.envelope.model_dump(exclude={"data"}) == parsed.envelope.model_dump(exclude={"data"})
    return True


@pytest.mark.parametrize("subscription", SUBSCRIPTIONS, ids=lambda s: s.topic)
def test_every_handled_type_takes_the_fast_path_and_reads_the_same(subscription):
    for model in subscription.handlers:
        payload = model.model_validate(sample(model, uuid.uuid4))
        _, value = encode(payload, source="oms/test", correlation_id="c")
        assert _same_reading(subscription, value), model


def test_hostile_messages_read_as_before():
    """Every kind of hostile message on every consumed topic: read by the general path, or (a well-formed one
    about an unknown order) read the same by both."""
    handled = {sub.topic: set(sub.handlers) for sub in SUBSCRIPTIONS}
    answers = {sub.topic: sub.on_invalid_payload for sub in SUBSCRIPTIONS if sub.on_invalid_payload}
    hostile = HostileGenerator(random.Random(11), "CODEC", handled, lookups(), answers, ANSWERED_ELSEWHERE)
    fast = 0
    for subscription in SUBSCRIPTIONS:
        for kind, _ in hostile.kinds_for(subscription.topic):
            for _ in range(5):
                message = hostile.make(subscription.topic, kind)
                fast += _same_reading(subscription, message.value)
    assert fast > 0


@pytest.mark.parametrize("asked", [True, False])
def test_a_decision_awaited_from_elsewhere_is_skipped_by_both_paths_and_read_otherwise(asked):
    """Capture reads routing's decision unless routing has asked inventory to pin it (its answer names the plan)."""
    capture = next(sub for sub in SUBSCRIPTIONS if sub.topic == ROUTING_EVENTS and OrderRouted in sub.handlers)
    decision = OrderRouted.model_validate({**sample(OrderRouted, uuid.uuid4), "allocation_requested": asked})
    _, value = encode(decision, source="oms/routing", correlation_id="c")
    (fast, fast_payload), (parsed, payload) = _read(capture, value), _read(capture, value, general=True)
    if asked:
        assert (fast.inbox_key, fast_payload, parsed.inbox_key, payload) == (None, None, None, None)
    else:
        assert fast_payload == payload == decision and fast.inbox_key == parsed.inbox_key == str(parsed.envelope.id)
    broken = json.loads(value)
    broken["data"]["location_id"] = None
    parsed, _ = _read(capture, json.dumps(broken).encode())
    assert parsed.dead_letter[0] == "INVALID_PAYLOAD", "read in full: capture may be its only reader"


@pytest.mark.parametrize("value", [
    b'{"specversion":"1.0","id":"00000000-0000-0000-0000-000000000001","type":"oms.capture.PlaceOrder.v1",'
    b'"source":"x","time":"2026-01-01T00:00:00Z","correlationid":"c","data":{"n":123456789012345678901234567890}}',
    b'[1, 2]', b'"text"', b'{"type": ["a"]}', b'{"type": "oms.capture.PlaceOrder.v1", "data": "\\u0000"}',
    b'{"type": "oms.capture.PlaceOrder.v1"', b'\xff\xfe', b'', None,
], ids=["huge-int", "array", "string", "odd-type", "nul", "truncated", "not-utf8", "empty", "none"])
def test_what_the_fast_path_cannot_read_it_leaves_to_the_general_path(value):
    capture = next(sub for sub in SUBSCRIPTIONS if sub.topic == "orders.commands.v1")
    parsed, _ = _read(capture, value)
    assert parsed.envelope is None or isinstance(parsed.envelope, Envelope)


@pytest.mark.parametrize("time, expected", [("2026-01-01T00:00:00", "2026-01-01T00:00:00+00:00"),
                                            ("2026-01-01T02:00:00+02:00", "2026-01-01T00:00:00+00:00")])
def test_an_envelope_time_without_an_offset_is_taken_as_utc(time, expected):
    """Consumers compare message times with their own (capture's ORDER_TOO_OLD): a naive one would not compare."""
    envelope = Envelope.model_validate_json(json.dumps({"type": "x", "source": "channel/web", "time": time,
                                                        "correlationid": "c", "data": {}}))
    assert envelope.time == datetime.fromisoformat(expected)  # a naive time equals no aware one


@pytest.mark.parametrize("distance", ["-1" + "0" * 400, "1e400", "-1e400", "NaN", "Infinity"],
                         ids=["beyond-a-float", "overflowing", "overflowing-negative", "nan", "infinity"])
@pytest.mark.parametrize("asked", [True, False])
def test_a_number_no_float_can_hold_is_refused_by_both_paths(distance, asked):
    """oms fuzz (seed 20261201) found an OrderRouted whose distance was a 401-digit integer: the general path refused
    it (no float holds it), the fast path read it as -inf, and capture skipped it unjudged (routing had asked
    inventory to pin it): no consumer dead-lettered it. No contract's number may be infinite or not a number."""
    capture = next(sub for sub in SUBSCRIPTIONS if sub.topic == ROUTING_EVENTS and OrderRouted in sub.handlers)
    decision = OrderRouted.model_validate({**sample(OrderRouted, uuid.uuid4), "distance_km": 1.5,
                                           "allocation_requested": asked})
    _, value = encode(decision, source="oms/routing", correlation_id="c")
    value = value.replace(b'"distance_km":1.5', b'"distance_km":' + distance.encode(), 1)
    for general in (False, True):
        parsed, payload = _read(capture, value, general)
        assert (parsed.dead_letter or ("",))[0] == "INVALID_PAYLOAD" and payload is None, (general, parsed.dead_letter)
