"""Reading the W3C trace context from Kafka headers as they come: valid, absent, or hostile."""

import pytest
from opentelemetry import trace

from shared.messaging.tracing import extract, headers_of

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
