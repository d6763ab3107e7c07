import uuid
from typing import get_args

import pytest
from pydantic import ValidationError

from ops.asyncapi import carries_pii
from ops.demo import sample_order
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
