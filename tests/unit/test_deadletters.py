import base64
import json
from datetime import UTC, datetime

from ops.deadletters import replayable
from shared.contracts.ops import DeadLetter


def letter(value: bytes, key: bytes | None = b"k1") -> DeadLetter:
    return DeadLetter(consumer="oms.x.y", source_topic="orders.commands.v1", source_partition=2, source_offset=7,
                      reason="HANDLER_ERROR", detail="boom", failed_at=datetime.now(UTC),
                      original_key_b64=base64.b64encode(key).decode() if key else None,
                      original_value_b64=base64.b64encode(value).decode())


def test_an_envelope_is_replayed_under_a_new_id_caused_by_the_original():
    original = {"id": "11111111-1111-1111-1111-111111111111", "type": "t", "data": {"a": 1}}
    topic, key, value, replay_id = replayable(letter(json.dumps(original).encode()))
    replayed = json.loads(value)
    assert (topic, key) == ("orders.commands.v1", b"k1")
    assert replayed["causationid"] == original["id"] and replayed["id"] != original["id"]
    assert replayed["id"] == replay_id == replayable(letter(json.dumps(original).encode()))[3], \
        "every replay of one letter carries the same id, so it is applied once"
    assert replayed["data"] == original["data"]


def test_bytes_that_are_not_an_envelope_are_replayed_as_they_were():
    assert replayable(letter(b"\x00not json", key=None)) == ("orders.commands.v1", None, b"\x00not json", None)
