from shared.contracts import REGISTRY, Envelope, wrap
from shared.contracts.topics import ALL_TOPICS
from ops.demo import sample_order
from services.fulfillment.domain import advances


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


def test_fulfilment_status_only_moves_forward():
    assert advances("requested", "shipped")
    assert not advances("shipped", "packed")
    assert not advances("picked", "picked")
