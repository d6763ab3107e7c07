"""The inventory service as a process exports its spans over OTLP/HTTP to a receiver in this test, continues the
trace a command arrived in, answers in the command's span, and writes that trace id in its log lines."""

import json
import secrets
import threading
import uuid
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from aiokafka.structs import RecordMetadata
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.trace.v1.trace_pb2 import Span, Status

from ops.client import client
from ops.processes import ServiceProcess
from ops.waiting import eventually
from shared.contracts import wrap
from shared.contracts.common import Line
from shared.contracts.inventory import ReserveStock, StockUnavailable
from shared.contracts.ops import DeadLetter
from shared.contracts.topics import DEAD_LETTERS, INVENTORY_COMMANDS, INVENTORY_EVENTS
from shared.settings import Settings

from ..support.stack import stack
from ..support.topics import TopicWatcher, of_type

pytestmark = pytest.mark.integration


class OtlpReceiver:
    """The smallest OTLP/HTTP trace receiver: keeps every span POSTed to it, with its resource's attributes."""

    def __init__(self):
        self.spans: list[tuple[dict, Span]] = []
        received = self.spans

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                request = ExportTraceServiceRequest.FromString(self.rfile.read(int(self.headers["Content-Length"])))
                for resource_spans in request.resource_spans:
                    resource = attributes(resource_spans.resource)
                    received.extend((resource, span) for scope in resource_spans.scope_spans for span in scope.spans)
                body = ExportTraceServiceResponse().SerializeToString()
                self.send_response(200)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_port}"

    def __enter__(self) -> "OtlpReceiver":
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()

    def spans_of(self, trace_id: str) -> list[tuple[dict, Span]]:
        return [(resource, span) for resource, span in list(self.spans) if span.trace_id.hex() == trace_id]


def attributes(item) -> dict:
    return {kv.key: getattr(kv.value, kv.value.WhichOneof("value")) for kv in item.attributes}


@dataclass
class TracedInventory:
    receiver: OtlpReceiver
    settings: Settings
    process: ServiceProcess

    async def send(self, value: bytes, key: str) -> tuple[str, str, RecordMetadata]:
        """Send a command in a trace of our own; returns its trace id, our (the parent's) span id, and where the
        command landed."""
        trace_id, parent_id = secrets.token_hex(16), secrets.token_hex(8)
        async with client(self.settings, "test/saga") as saga:
            sent = await saga.producer.send_and_wait(
                self.settings.topic(INVENTORY_COMMANDS), value, key.encode(),
                headers=[("traceparent", f"00-{trace_id}-{parent_id}-01".encode())])
        return trace_id, parent_id, sent

    async def exported_span(self, trace_id: str) -> tuple[dict, Span]:
        [exported] = await eventually(lambda: self.receiver.spans_of(trace_id), what=f"spans of trace {trace_id}")
        return exported


@pytest.fixture(scope="module")
async def inventory(config, tmp_path_factory):
    """Its own database and topics: the exporting process must not share a consumer group with other tests'."""
    with OtlpReceiver() as receiver:
        async with stack(config, tmp_path_factory.mktemp("traced"), services=()) as oms:
            oms.env.update(OTEL_EXPORTER_OTLP_ENDPOINT=receiver.url, OTEL_BSP_SCHEDULE_DELAY="50")
            yield TracedInventory(receiver, oms.settings, await oms.start("inventory"))


def reserve(order_id: uuid.UUID, quantity: int) -> bytes:
    """A ReserveStock of a SKU inventory does not know; a negative quantity makes it invalid."""
    command = ReserveStock.model_construct(order_id=order_id, lines=[Line.model_construct(sku="NO-SUCH-SKU",
                                                                                         quantity=quantity)])
    return wrap(command, source="test/saga", correlation_id=f"c-{order_id}").model_dump_json().encode()


def traceparent(record) -> str:
    [value] = [value.decode() for name, value in record.headers if name == "traceparent"]
    return value


async def test_a_commands_span_is_exported_in_the_senders_trace_and_its_answer_carries_it(inventory):
    order_id = uuid.uuid4()
    command = reserve(order_id, 1)
    async with TopicWatcher(inventory.settings, INVENTORY_EVENTS) as events:
        trace_id, parent_id, sent = await inventory.send(command, str(order_id))
        await events.wait_for(of_type(StockUnavailable, order_id))
        [(_, answer)] = events.matching(of_type(StockUnavailable, order_id))

    resource, span = await inventory.exported_span(trace_id)
    assert resource["service.name"] == "oms-inventory"
    assert (span.name, span.kind) == (f"{sent.topic} process", Span.SPAN_KIND_CONSUMER)
    assert span.parent_span_id.hex() == parent_id
    assert attributes(span) == {
        "messaging.system": "kafka", "messaging.operation.type": "process", "messaging.destination.name": sent.topic,
        "messaging.destination.partition.id": str(sent.partition), "messaging.kafka.offset": sent.offset,
        "messaging.consumer.group.name": f"{inventory.settings.topic_prefix}oms.inventory.{INVENTORY_COMMANDS}",
        "messaging.message.id": json.loads(command)["id"], "messaging.message.conversation_id": f"c-{order_id}",
        "oms.message_type": ReserveStock.message_type, "oms.order_id": str(order_id), "oms.outcome": "applied"}
    assert traceparent(answer).split("-")[1:3] == [trace_id, span.span_id.hex()], "the answer is the span's child"


async def test_a_dead_letter_stays_in_the_trace_and_its_log_line_names_it(inventory):
    order_id = uuid.uuid4()

    def about_order(e):
        return e["type"] == DeadLetter.message_type and e["correlationid"] == f"c-{order_id}"

    async with TopicWatcher(inventory.settings, DEAD_LETTERS) as dead_letters:
        trace_id, _, _ = await inventory.send(reserve(order_id, -3), str(order_id))
        await dead_letters.wait_for(about_order)
        [(_, letter)] = dead_letters.matching(about_order)

    _, span = await inventory.exported_span(trace_id)
    assert (span.status.code, span.status.message) == (Status.STATUS_CODE_ERROR, "INVALID_PAYLOAD")
    assert traceparent(letter).split("-")[1:3] == [trace_id, span.span_id.hex()]
    logged = [json.loads(line) for line in inventory.process.logfile.read_text().splitlines()]
    assert any(line["event"] == "consumer.dead_letter" and line.get("trace_id") == trace_id for line in logged)
