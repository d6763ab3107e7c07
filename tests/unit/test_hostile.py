"""The fuzz run's generator: valid samples of every contract, and hostile messages the contracts refuse."""

import json
import random
import uuid

import pytest

from ops.fuzz import lookups, subscriptions
from ops.hostile import DEAD_LETTER, REJECTED, HostileGenerator, refused_by_contracts, sample
from shared.contracts import REGISTRY


@pytest.mark.parametrize("model", sorted(REGISTRY.values(), key=lambda m: m.message_type), ids=lambda m: m.__name__)
def test_every_contract_has_a_valid_sample_and_a_partition_key(model):
    assert model.model_validate(sample(model, uuid.uuid4)).key()


def generator() -> HostileGenerator:
    subs = subscriptions()
    handled = {sub.topic: set(sub.handlers) for _, sub in subs}
    answers = {sub.topic: sub.on_invalid_payload for _, sub in subs if sub.on_invalid_payload}
    return HostileGenerator(random.Random(7), "FZ-TEST", handled, lookups(), answers)


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


def test_an_invalid_order_that_names_itself_expects_an_order_rejected_naming_it():
    hostile = generator()
    messages = [hostile.make("orders.commands.v1", "invalid payload") for _ in range(200)]
    rejected = [m for m in messages if m.expect == REJECTED]
    assert rejected
    for message in rejected:
        data = json.loads(message.value)["data"]
        assert message.ref == (data["channel"], data["channel_order_id"])
