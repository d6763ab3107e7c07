"""Reading the W3C trace context from Kafka headers as they come: valid, absent, or hostile; which records get a
span."""

import json
import uuid

import pytest
from aiokafka.structs import ConsumerRecord
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.sampling import ALWAYS_OFF

from shared.contracts.routing import RegisterLocation, RouteOrder
from shared.contracts.topics import ROUTING_COMMANDS
from shared.messaging import tracing
from shared.messaging.consumer import Consumer, Subscription
from shared.messaging.tracing import extract, headers_of, unrecorded_child
from shared.settings import settings

TRACEPARENT = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"


def remote_span(headers) -> trace.SpanContext:
    return trace.get_current_span(extract(headers)).get_span_context()


def test_a_traceparent_header_is_the_remote_parent_and_is_sent_on_as_it_came():
    context = extract([("other", b"x"), ("traceparent", TRACEPARENT.encode()), ("tracestate", b"vendor=1")])
    span = trace.get_current_span(context).get_span_context()
    assert (span.is_valid, span.is_remote, f"{span.trace_id:032x}") == (True, True, TRACEPARENT.split("-")[1])
    assert headers_of(context) == {"traceparent": TRACEPARENT, "tracestate": "vendor=1"}


@pytest.mark.parametrize("headers", [[], [("traceparent", None)], [("traceparent", b"\xff\xfe")],
                                     [("traceparent", b"00-00000000000000000000000000000000-b7ad6b7169203331-01")]])
def test_no_usable_traceparent_means_no_parent(headers):
    assert not remote_span(headers).is_valid


@pytest.mark.parametrize("headers", [
    [],
    [("traceparent", TRACEPARENT.encode()), ("tracestate", b"vendor=1,other=2")],
    [("traceparent", TRACEPARENT[:-2].encode() + b"00")],
    [("traceparent", TRACEPARENT[:-2].encode() + b"03")],  # sampled, with a random trace id (W3C level 2)
    [("traceparent", b"00-00000000000000000000000000000000-b7ad6b7169203331-01")],
])
def test_a_records_unrecorded_span_is_the_one_the_sdk_would_start_when_it_samples_nothing(headers):
    """Made directly while the process records nothing (consuming): what a record's answers carry must not
    differ from what the SDK's span under an ALWAYS_OFF sampler would give them, but its span id."""
    provider = TracerProvider(sampler=ALWAYS_OFF)
    parent = extract(headers)
    by_the_sdk = provider.get_tracer("test").start_span("x", context=parent).get_span_context()
    made = unrecorded_child(parent, provider)
    ours = made.get_span_context()
    assert not made.is_recording()
    assert (ours.trace_flags, ours.trace_state, ours.is_remote) == (
        by_the_sdk.trace_flags, by_the_sdk.trace_state, by_the_sdk.is_remote)
    assert ours.is_valid and ours.span_id != remote_span(headers).span_id
    if remote_span(headers).is_valid:
        assert ours.trace_id == by_the_sdk.trace_id
    else:
        assert ours.trace_id != by_the_sdk.trace_id  # a new trace each
    header_names = set(headers_of(trace.set_span_in_context(made)))
    assert header_names == set(headers_of(trace.set_span_in_context(
        provider.get_tracer("test").start_span("x", context=parent))))


@pytest.mark.parametrize("records_spans", [False, True])
def test_a_record_skipped_as_another_services_gets_a_span_only_where_spans_are_recorded(monkeypatch, records_spans):
    monkeypatch.setattr(tracing, "_provider_recording_nothing",
                        None if records_spans else TracerProvider(sampler=ALWAYS_OFF))
    consumer = Consumer(None, service="routing", writes=frozenset(), group="g", settings=settings())
    subscription = Subscription(ROUTING_COMMANDS, {RegisterLocation: None})
    others = {"specversion": "1.0", "id": str(uuid.uuid4()), "type": RouteOrder.message_type, "source": "test",
              "correlationid": "c-1", "data": {}}
    record = ConsumerRecord(topic=ROUTING_COMMANDS, partition=0, offset=0, timestamp=0, timestamp_type=0, key=b"k",
                            value=json.dumps(others).encode(), checksum=None, serialized_key_size=1,
                            serialized_value_size=1, headers=[("traceparent", TRACEPARENT.encode())])
    parsed = consumer._parse(subscription, record)
    assert parsed.payload is None and parsed.dead_letter is None  # skipped
    assert parsed.span.get_span_context().is_valid is records_spans
