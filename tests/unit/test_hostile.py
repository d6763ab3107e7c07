"""The fuzz run's generator: valid samples of every contract, and hostile messages the contracts refuse."""

import json
import random
import uuid

import pytest

from ops.fuzz import lookups, subscriptions
from services.capture.saga import ANSWERED_ELSEWHERE
from ops.hostile import DEAD_LETTER, REJECTED, HostileGenerator, refused_by_contracts, sample
from shared.contracts import REGISTRY
from shared.contracts.orders import PlaceOrder


@pytest.mark.parametrize("model", sorted(REGISTRY.values(), key=lambda m: m.message_type), ids=lambda m: m.__name__)
def test_every_contract_has_a_valid_sample_and_a_partition_key(model):
    assert model.model_validate(sample(model, uuid.uuid4)).key()


def generator() -> HostileGenerator:
    subs = subscriptions()
    handled = {sub.topic: set(sub.handlers) for _, sub in subs}
    answers = {sub.topic: sub.on_invalid_payload for _, sub in subs if sub.on_invalid_payload}
    return HostileGenerator(random.Random(7), "FZ-TEST", handled, lookups(), answers, ANSWERED_ELSEWHERE)


def test_a_message_about_an_unknown_order_is_one_its_consumer_reads():
    """The sample sets every flag; a decision capture awaits from inventory instead would not be read at all."""
    hostile = generator()
    for _ in range(40):
        data = json.loads(hostile.unknown_order("routing.events.v1").value)["data"]
        assert data.get("allocation_requested", False) is False


def test_every_kind_on_every_consumed_topic_is_refused_by_the_contracts():
    hostile = generator()
    for topic in hostile.handled:
        for kind, _ in hostile.kinds_for(topic):
            for _ in range(20):
                message = hostile.make(topic, kind)
                assert message.expect in (DEAD_LETTER, REJECTED)
                assert len(message.value or b"") <= 1_000_000
                if kind != "unknown order":  # well-formed: its handler refuses it, not the contracts
                    assert refused_by_contracts(topic, hostile.handled[topic], message.value), (topic, kind)


def test_an_invalid_order_or_edit_that_names_itself_expects_the_answer_naming_it():
    """An order is answered with OrderRejected; an edit of one, with OrderEditRefused naming the edit."""
    hostile = generator()
    messages = [hostile.make("orders.commands.v1", kind) for kind in ("invalid payload", "NUL and control characters")
                for _ in range(200)]
    answered = {}
    for message in (m for m in messages if m.expect == REJECTED):
        envelope = json.loads(message.value)
        data, answer = envelope["data"], ("OrderRejected" if envelope["type"] == PlaceOrder.message_type
                                          else "OrderEditRefused")
        edit_id = data["edit_id"] if answer == "OrderEditRefused" else ""
        assert message.ref == (data["channel"], data["channel_order_id"], f"oms.capture.{answer}.v1", edit_id)
        answered[answer] = answered.get(answer, 0) + 1
    assert set(answered) == {"OrderRejected", "OrderEditRefused"}
