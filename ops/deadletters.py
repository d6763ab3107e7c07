"""Dead letters for operators: list them with their reasons, and replay one once its cause is fixed.

A replay publishes the original bytes again to the topic they came from, with the original key. A message
that was a valid envelope gets a new id (its causation id pointing at the original): the original was never
applied — its transaction was rolled back and its id is in the consumer's inbox — so only a new id can be
applied, and only once.
"""

import base64
import json
import uuid
from dataclasses import dataclass

from shared.contracts import Envelope
from shared.contracts.ops import DeadLetter
from shared.contracts.topics import DEAD_LETTERS
from shared.settings import Settings

from . import history
from .client import Client


@dataclass(frozen=True)
class Letter:
    letter: DeadLetter

    @property
    def position(self) -> str:
        return self.letter.key()

    def line(self) -> str:
        return (f"{self.letter.failed_at:%Y-%m-%d %H:%M:%S}  {self.position:<45} {self.letter.consumer:<45} "
                f"{self.letter.reason:<16} {self.letter.detail[:100]}")


async def read_all(settings: Settings) -> list[Letter]:
    letters: dict[str, Letter] = {}
    async for record in history.records(settings, DEAD_LETTERS):
        letter = Letter(DeadLetter.model_validate(Envelope.model_validate_json(record.value).data))
        letters.setdefault(letter.position, letter)  # a relay's re-send is the same letter
    return sorted(letters.values(), key=lambda item: item.letter.failed_at)


def replayable(letter: DeadLetter) -> tuple[str, bytes | None, bytes]:
    """The topic, key and value to publish again."""
    key = base64.b64decode(letter.original_key_b64) if letter.original_key_b64 is not None else None
    value = base64.b64decode(letter.original_value_b64)
    try:
        original = json.loads(value)
    except ValueError:
        return letter.source_topic, key, value
    if isinstance(original, dict) and "id" in original:
        original["causationid"], original["id"] = original["id"], str(uuid.uuid4())
        value = json.dumps(original).encode()
    return letter.source_topic, key, value


async def replay(client: Client, letter: DeadLetter) -> None:
    topic, key, value = replayable(letter)
    await client.producer.send_and_wait(topic, value, key)
