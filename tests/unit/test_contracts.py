import json
import uuid
from collections.abc import Iterator
from typing import Any, get_args

import jsonschema_rs
import pytest
from pydantic import ValidationError

from ops.asyncapi import carries_pii
from ops.demo import sample_order
from ops.hostile import sample
from services.fulfillment.domain import advances, belongs
from services.notification.templates import Templates
from shared.contracts import REGISTRY, Envelope, wrap
from shared.contracts.notification import NotificationKind
from shared.contracts.orders import CustomerOnRecord, OrderAccepted, OrderConfirmed, PlaceOrder
from shared.contracts.topics import ALL_TOPICS


def test_every_contract_is_versioned_and_on_a_known_topic():
    for message_type, model in REGISTRY.items():
        assert message_type.startswith("oms.") and message_type.rsplit(".", 1)[-1].startswith("v")
        assert model.topic in ALL_TOPICS


def test_topic_names_say_domain_kind_and_version():
    for topic in ALL_TOPICS:
        domain, kind, version = topic.split(".")
        assert domain and kind and version.startswith("v")


def test_envelope_round_trip_keeps_payload_and_ids():
    order = sample_order("W-9")
    envelope = wrap(order, source="channel/web", correlation_id="corr-1")
    again = Envelope.model_validate_json(envelope.model_dump_json())
    assert again == envelope
    assert REGISTRY[again.type].model_validate(again.data) == order
    assert again.subject == "web/W-9"


def test_fulfilment_status_only_moves_forward_along_its_deliverys_path():
    assert advances("ship", "requested", "shipped")
    assert advances("ship", "shipped", "delivered")
    assert not advances("ship", "shipped", "packed")
    assert not advances("ship", "shipped", "rejected")  # it left the building
    assert not advances("ship", "picked", "picked")
    assert advances("pickup", "picked", "ready_for_pickup")
    assert advances("pickup", "ready_for_pickup", "picked_up")
    assert advances("pickup", "ready_for_pickup", "rejected")
    assert not advances("pickup", "picked_up", "rejected")
    assert not advances("ship", "cancelled", "shipped")


def test_a_location_may_not_report_a_step_of_the_other_kind_of_delivery():
    assert belongs("ship", "delivered") and belongs("pickup", "picked_up") and belongs("pickup", "rejected")
    assert not belongs("pickup", "shipped") and not belongs("ship", "ready_for_pickup")


def test_every_customer_message_template_is_a_kind_the_contract_names():
    assert Templates().kinds() == set(get_args(NotificationKind))


def test_an_address_is_checked_when_the_order_is_placed_and_passed_on_as_it_was_checked():
    placed = sample_order("W-1").model_dump(mode="json")
    with pytest.raises(ValidationError, match="email"):
        PlaceOrder.model_validate(placed | {"customer": placed["customer"] | {"email": "no at sign"}})
    anna = placed["customer"] | {"email": "Anna@Example.COM"}
    customer = PlaceOrder.model_validate(placed | {"customer": anna}).customer
    assert customer.email == "Anna@example.com"  # normalised once, at intake

    passed_on = CustomerOnRecord.model_validate_json(customer.model_dump_json())
    assert passed_on.model_dump() == customer.model_dump()
    # Readers of OrderAccepted do not run email-validator again: they take what capture checked.
    assert CustomerOnRecord(customer_id="C-1", email="no at sign", name="A").email == "no at sign"
    assert carries_pii(OrderAccepted)  # still marked as personal data in the AsyncAPI document


def test_a_contracts_field_is_read_by_name_and_one_it_lacks_is_none():
    place = sample_order(lines=[("CAP-BLACK", 1)])
    assert place.field("channel") == place.channel
    assert place.field("order_id") is None and place.field("no_such_field") is None
    confirmed = OrderConfirmed(order_id=uuid.uuid4(), location_id="WH-1", fulfillment_order_id=uuid.uuid4())
    assert confirmed.field("order_id") == confirmed.order_id


@pytest.mark.parametrize("model", sorted(REGISTRY.values(), key=lambda m: m.message_type), ids=lambda m: m.__name__)
def test_what_the_documented_schema_lets_a_client_leave_out_the_contract_accepts_without(model):
    """A client generated from the AsyncAPI or OpenAPI document leaves out what its schema does not require.
    schemathesis found one: a delivery's `type`, optional in the schema, is the tag its union is told apart by."""
    documented = jsonschema_rs.validator_for(model.model_json_schema())
    valid = json.loads(json.dumps(sample(model, uuid.uuid4), default=str))
    model.model_validate(valid)
    for trimmed in _each_with_one_key_left_out(valid):
        if documented.is_valid(trimmed):
            model.model_validate(trimmed)


def _each_with_one_key_left_out(data: Any) -> Iterator[Any]:
    if isinstance(data, dict):
        for key, value in data.items():
            yield {k: v for k, v in data.items() if k != key}
            yield from ({**data, key: inner} for inner in _each_with_one_key_left_out(value))
    elif isinstance(data, list) and data:
        yield from ([inner, *data[1:]] for inner in _each_with_one_key_left_out(data[0]))
