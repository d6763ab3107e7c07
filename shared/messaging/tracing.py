"""Traces across every hop: the W3C trace context (`traceparent`, `tracestate`) travels as Kafka record headers.

Each consumed record gets a CONSUMER span whose parent is the context in its headers (a record without one
starts a new trace); whatever a handler stages in answer to that record carries that span's context, stored
with the outbox row and sent as headers by the relay. So one order's trace runs unbroken through every
service. Spans are exported over OTLP/HTTP only when the standard OTEL_EXPORTER_OTLP_ENDPOINT (or
OTEL_EXPORTER_OTLP_TRACES_ENDPOINT) is set; without it the context still propagates and nothing is exported.
"""

import os
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from uuid import UUID

from aiokafka.structs import ConsumerRecord
from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.propagators.textmap import Getter
from opentelemetry.sdk.resources import SERVICE_NAME, Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.sdk.trace.sampling import ALWAYS_OFF
from opentelemetry.trace import NonRecordingSpan, Span, SpanContext, SpanKind, TraceFlags
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from shared.contracts import Envelope

KafkaHeaders = Sequence[tuple[str, bytes | None]]

_W3C = TraceContextTextMapPropagator()
_tracer = trace.get_tracer("oms.messaging")
_provider_recording_nothing: TracerProvider | None = None  # the process exports no span: see consuming()


class _KafkaHeaderGetter(Getter[KafkaHeaders]):
    def get(self, carrier: KafkaHeaders, key: str) -> list[str] | None:
        return [(value or b"").decode(errors="replace") for name, value in carrier if name == key] or None

    def keys(self, carrier: KafkaHeaders) -> list[str]:
        return [name for name, _ in carrier]


_KAFKA_HEADERS = _KafkaHeaderGetter()


def configure_tracing(service: str) -> TracerProvider:
    """The process's tracer provider; shut it down on exit to flush the spans not yet exported."""
    exporting = bool(os.environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
                     or os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT"))
    # With nowhere to export, a recorded span is built only to be dropped (about 20 us of CPU per record):
    # record none unless OTEL_TRACES_SAMPLER says otherwise. Unrecorded spans still have ids, so the trace
    # context propagates all the same (marked not sampled, which is the truth).
    sampler = None if exporting or os.environ.get("OTEL_TRACES_SAMPLER") else ALWAYS_OFF
    provider = TracerProvider(sampler=sampler, resource=Resource.create({SERVICE_NAME: f"oms-{service}"}))
    if exporting:
        provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    trace.set_tracer_provider(provider)
    if trace.get_tracer_provider() is provider:  # a process keeps its first provider
        global _provider_recording_nothing
        _provider_recording_nothing = provider if sampler is ALWAYS_OFF else None
    return provider


def recording() -> bool:
    """Whether this process records spans (it exports them); when it does not, a span nothing else carries (a
    record skipped as another service's business) need not be made at all."""
    return _provider_recording_nothing is None


def consuming(record: ConsumerRecord, group: str, envelope: Envelope | None, order_id: UUID | None) -> Span:
    """The span of one consumed record, child of the context its producer sent (if any)."""
    parent = extract(record.headers or ())
    if _provider_recording_nothing is not None:
        return unrecorded_child(parent, _provider_recording_nothing)
    attributes = {
        "messaging.system": "kafka",
        "messaging.operation.type": "process",
        "messaging.destination.name": record.topic,
        "messaging.destination.partition.id": str(record.partition),
        "messaging.kafka.offset": record.offset,
        "messaging.consumer.group.name": group,
    }
    if envelope is not None:
        attributes["messaging.message.id"] = str(envelope.id)
        attributes["messaging.message.conversation_id"] = envelope.correlationid
        attributes["oms.message_type"] = envelope.type
    if order_id is not None:
        attributes["oms.order_id"] = str(order_id)
    return _tracer.start_span(f"{record.topic} process", context=parent, kind=SpanKind.CONSUMER,
                              attributes=attributes)


def unrecorded_child(parent: Context, provider: TracerProvider) -> Span:
    """The span the SDK starts under `parent` when its sampler drops it, made directly: the SDK's way, with its
    sampler, attributes and metrics, costs ~10 us a record against ~6 (test_tracing pins the two together)."""
    parent_span = trace.get_current_span(parent).get_span_context()
    ids = provider.id_generator
    if parent_span.is_valid:
        trace_id, random_trace_id = parent_span.trace_id, parent_span.trace_flags.random_trace_id
    else:
        trace_id, random_trace_id = ids.generate_trace_id(), ids.is_trace_id_random()
    flags = TraceFlags(TraceFlags.RANDOM_TRACE_ID if random_trace_id else TraceFlags.DEFAULT)
    return NonRecordingSpan(SpanContext(trace_id, ids.generate_span_id(), is_remote=False, trace_flags=flags,
                                        trace_state=parent_span.trace_state))


@contextmanager
def continuing(headers: dict[str, str], name: str, attributes: dict[str, str]) -> Iterator[Context]:
    """A span for work no message started, in the trace whose context was stored as `headers` (a new trace if
    none was); yields the context that carries it."""
    with _tracer.start_as_current_span(name, context=_W3C.extract(headers), attributes=attributes) as span:
        yield trace.set_span_in_context(span)


def extract(headers: KafkaHeaders) -> Context:
    return _W3C.extract(headers, getter=_KAFKA_HEADERS)


def headers_of(context: Context) -> dict[str, str]:
    """The W3C headers that carry `context` (none if it holds no valid span)."""
    carrier: dict[str, str] = {}
    _W3C.inject(carrier, context=context)
    return carrier


def trace_id_of(context: Context) -> str | None:
    """The trace id as log lines carry it, or None outside any trace."""
    span_context = trace.get_current_span(context).get_span_context()
    return trace.format_trace_id(span_context.trace_id) if span_context.is_valid else None
