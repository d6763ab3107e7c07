"""Generates the AsyncAPI 3.0 document of every topic and message from the contracts and service definitions.

Hand-built rather than FastStream's generator (`faststream docs gen`): our subscribers take raw records, so that
bytes which are not even JSON still reach the dead-letter path with the original bytes, and FastStream derives
a payload schema only from a handler's signature; it would document every channel as an untyped list. Every
message here is the envelope around one contract, which FastStream cannot express either.
"""

import json
from pathlib import Path

from typing import Any, get_args

from pydantic import BaseModel, EmailStr
from pydantic.json_schema import models_json_schema

from services.capture import saga
from shared.contracts import REGISTRY, Envelope
from shared.contracts.common import Address
from shared.contracts.orders import CustomerOnRecord
from shared.contracts.topics import ALL_TOPICS, DESCRIPTIONS, PARTY_READ_TOPICS, PER_PARTY_ONLY

from .env import ROOT
from .prepare import service_definitions
from .principals import PARTY_KINDS

SPEC_PATH = ROOT / "docs" / "asyncapi.json"
REF = "#/components/schemas/{model}"


def _channel_id(topic: str) -> str:
    return topic.replace(".", "_").replace("-", "_")


def _message_id(message_type: str) -> str:
    return message_type.replace(".", "_")


PARTY_MISMATCH = {"channel": "CHANNEL_MISMATCH", "location": "LOCATION_MISMATCH"}
PII_NOTE = "Carries customer personal data (name, email or address): only readers that need it may subscribe."
TRACE_HEADERS = {
    "type": "object",
    "description": "Kafka record headers: W3C trace context of the span that caused the message (optional).",
    "properties": {"traceparent": {"type": "string",
                                   "examples": ["00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"]},
                   "tracestate": {"type": "string"}},
}


def carries_pii(model: type[BaseModel]) -> bool:
    """Whether any field, however deep, holds a customer or an address."""
    return any(_holds_pii(field.annotation) for field in model.model_fields.values())


def _holds_pii(annotation: object) -> bool:
    if annotation is EmailStr or isinstance(annotation, type) and issubclass(annotation, CustomerOnRecord | Address):
        return True
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return carries_pii(annotation)
    return any(_holds_pii(arg) for arg in get_args(annotation))


def generate() -> dict:
    models = sorted(REGISTRY.values(), key=lambda m: m.message_type)
    _, definitions = models_json_schema([(m, "validation") for m in [Envelope, *models]], ref_template=REF)
    schemas = _asyncapi_schema(definitions["$defs"])
    messages = {
        _message_id(m.message_type): {
            "name": m.message_type,
            "title": m.__name__,
            "summary": (m.__doc__ or m.__name__).strip().splitlines()[0],
            "contentType": "application/json",
            "tags": [{"name": "pii", "description": PII_NOTE}] if carries_pii(m) else [],
            "headers": TRACE_HEADERS,
            "payload": {
                "allOf": [{"$ref": REF.format(model="Envelope")},
                          {"type": "object", "properties": {"type": {"const": m.message_type},
                                                             "data": {"$ref": REF.format(model=m.__name__)}}}],
            },
        }
        for m in models
    }
    channels = {
        _channel_id(topic): {
            "address": topic,
            "description": DESCRIPTIONS[topic],
            "messages": {_message_id(m.message_type): {"$ref": f"#/components/messages/{_message_id(m.message_type)}"}
                         for m in models if m.topic == topic},
        }
        for topic in ALL_TOPICS
    }
    for topic, kind in PARTY_READ_TOPICS.items():
        what = (DESCRIPTIONS[topic] if topic in PER_PARTY_ONLY
                else f"The messages of {topic} about one {kind}'s orders.")
        read_alone = {"address": f"{topic}.{{{kind}}}",
                      "description": f"{what} Only that {kind}'s principal ({kind}-<{kind}>) may read it; ops "
                                     "creates it when the party is added.",
                      "parameters": {kind: {"description": f"the {kind}'s id, as the messages name it"}}}
        if topic in PER_PARTY_ONLY:
            channels[_channel_id(topic)].update(read_alone)
        else:
            channels[_channel_id(topic) + "_party"] = {**channels[_channel_id(topic)], **read_alone}
    for kind, party in PARTY_KINDS.items():
        if party.own_topic:
            channels[_channel_id(party.own_topic) + "_party"] = {
                **channels[_channel_id(party.own_topic)],
                "address": f"{party.own_topic}.{{{kind}}}",
                "description": f"Each {kind}'s own topic: only its principal ({kind}-<{kind}>) may write it, and "
                               f"what it sends must be about itself, or it is dead-lettered "
                               f"({PARTY_MISMATCH[kind]}). The topic without a suffix is written by ops only.",
                "parameters": {kind: {"description": f"the {kind}'s id, as its messages name it"}},
            }
    operations = {}
    for service in service_definitions():
        for subscription in service.subscriptions:
            for channel in [_channel_id(subscription.topic)] + ([_channel_id(subscription.topic) + "_party"]
                                                                 if subscription.per_party else []):
                operations[f"{service.name}_receives_{channel}"] = {
                    "action": "receive",
                    "channel": {"$ref": f"#/channels/{channel}"},
                    "summary": f"{service.name} consumes {channels[channel]['address']} "
                               f"(group oms.{service.name}.{subscription.topic})",
                    "messages": [{"$ref": f"#/channels/{channel}/messages/{_message_id(m.message_type)}"}
                                 for m in sorted(subscription.handlers, key=lambda m: m.message_type)],
                }
        for topic in service.publishes:
            copied = topic in PARTY_READ_TOPICS and topic not in PER_PARTY_ONLY  # also to each party's own
            for channel in [_channel_id(topic)] + ([_channel_id(topic) + "_party"] if copied else []):
                operations[f"{service.name}_sends_{channel}"] = {
                    "action": "send",
                    "channel": {"$ref": f"#/channels/{channel}"},
                    "summary": f"{service.name} publishes to {channels[channel]['address']} through its "
                               "transactional outbox",
                }
        for topic in service.publishes_for_parties:
            channel = _channel_id(topic) + "_party"
            operations[f"{service.name}_sends_{channel}"] = {
                "action": "send",
                "channel": {"$ref": f"#/channels/{channel}"},
                "summary": f"{service.name} publishes to {channels[channel]['address']} through its transactional "
                           "outbox, for the party an HTTP caller's key names",
            }
    return {
        "asyncapi": "3.0.0",
        "info": {
            "title": "oms — Order Management System events",
            "version": "1",
            "description": "Every topic and message of the OMS. Messages are JSON envelopes with CloudEvents "
                           "attribute names; `data` holds the payload. Topics are <domain>.<kind>.v<version>; "
                           "order-scoped topics are keyed by order id. Generated by `oms asyncapi`.",
        },
        "defaultContentType": "application/json",
        "servers": {"local": {"host": "127.0.0.1:19092", "protocol": "kafka", "description": "./oms up",
                              "security": [{"$ref": "#/components/securitySchemes/scram"}]}},
        "channels": channels,
        "operations": operations,
        "components": {"messages": messages, "schemas": schemas, "securitySchemes": {"scram": {
            "type": "scramSha512",
            "description": "SASL/SCRAM-SHA-512 over SASL_PLAINTEXT on loopback (SASL_SSL with OMS_KAFKA_TLS=1); "
                           "one principal per service and "
                           "party, with the ACLs of README's 'Who may do what on Kafka'."}}},
    }


def _asyncapi_schema(schema: Any) -> Any:
    """pydantic writes OpenAPI's discriminator (an object: propertyName, mapping); AsyncAPI's Schema Object takes
    the property's name, and its own parser refuses the document otherwise."""
    if isinstance(schema, list):
        return [_asyncapi_schema(item) for item in schema]
    if not isinstance(schema, dict):
        return schema
    return {key: value["propertyName"] if key == "discriminator" and isinstance(value, dict) and "propertyName" in value
            else _asyncapi_schema(value) for key, value in schema.items()}


def render() -> str:
    return json.dumps(generate(), indent=2, sort_keys=False) + "\n"


def write(path: Path = SPEC_PATH) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(render())
    return path


def write_saga_table(readme: Path = ROOT / "README.md") -> Path:
    """The README's saga table, from the saga's declaration."""
    text = readme.read_text()
    before, rest = text.split(saga.README_TABLE_START)
    after = rest.split(saga.README_TABLE_END)[1]
    readme.write_text(before + saga.README_TABLE_START + saga.table() + saga.README_TABLE_END + after)
    return readme
