"""Dead letters for operators: list them with their reasons, and replay one once its cause is fixed.

A replay publishes the original bytes again to the topic they came from, with the original key. A message
that was a valid envelope gets a new id (its causation id pointing at the original): the original was never
applied — its transaction was rolled back and its id is in the consumer's inbox — so only a new id can be
applied. That id is derived from the letter, so replaying one letter twice is applied once. Every replay is
recorded on the dead-letter topic (DeadLetterReplayed: who, when, which letter). When the letter carries only
the start of a large original, the whole of it comes from the service's own `dead_letters` table.
"""

import base64
import getpass
import json
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime

import asyncpg

from shared.contracts import Envelope
from shared.contracts.ops import DeadLetter, DeadLetterReplayed
from shared.contracts.topics import DEAD_LETTERS
from shared.db.bootstrap import SERVICES
from shared.settings import Settings

from . import history
from .client import Client


REPLAY_NAMESPACE = uuid.UUID("5d0c8a52-3f6e-4c1b-9d1e-7a2f4b8c6e01")


@dataclass
class Letter:
    letter: DeadLetter
    replays: list[DeadLetterReplayed] = field(default_factory=list)

    @property
    def position(self) -> str:
        return self.letter.key()

    def line(self) -> str:
        replayed = f"  (replayed {len(self.replays)}x, last by {self.replays[-1].replayed_by})" if self.replays else ""
        return (f"{self.letter.failed_at:%Y-%m-%d %H:%M:%S}  {self.position:<45} {self.letter.consumer:<45} "
                f"{self.letter.reason:<16} {self.letter.detail[:100]}{replayed}")


async def read_all(settings: Settings) -> list[Letter]:
    letters: dict[str, Letter] = {}
    replays: list[DeadLetterReplayed] = []
    async for record in history.records(settings, DEAD_LETTERS):
        envelope = Envelope.model_validate_json(record.value)
        if envelope.type == DeadLetterReplayed.message_type:
            replays.append(DeadLetterReplayed.model_validate(envelope.data))
        else:
            letter = Letter(DeadLetter.model_validate(envelope.data))
            letters.setdefault(letter.position, letter)  # a relay's re-send is the same letter
    for replayed in replays:
        if replayed.position in letters:
            letters[replayed.position].replays.append(replayed)
    return sorted(letters.values(), key=lambda item: item.letter.failed_at)


def replayable(letter: DeadLetter, original: bytes | None = None) -> tuple[str, bytes | None, bytes, str | None]:
    """The topic, key and value to publish again, and the id the replayed envelope carries."""
    key = base64.b64decode(letter.original_key_b64) if letter.original_key_b64 is not None else None
    value = original if original is not None else base64.b64decode(letter.original_value_b64)
    try:
        envelope = json.loads(value)
    except ValueError:
        return letter.source_topic, key, value, None
    if not (isinstance(envelope, dict) and "id" in envelope):
        return letter.source_topic, key, value, None
    replay_id = str(uuid.uuid5(REPLAY_NAMESPACE, f"{letter.consumer}/{letter.key()}"))
    envelope["causationid"], envelope["id"] = envelope["id"], replay_id
    return letter.source_topic, key, json.dumps(envelope).encode(), replay_id


async def whole_original(settings: Settings, letter: DeadLetter) -> bytes:
    """A truncated letter's original bytes, from the dead_letters table of the service that wrote it."""
    conn = await asyncpg.connect(settings.reader_dsn())
    try:
        for service in SERVICES:
            value = await conn.fetchval(
                f"SELECT original_value FROM {service}.dead_letters WHERE consumer = $1 AND source_topic = $2 "
                "AND source_partition = $3 AND source_offset = $4",
                letter.consumer, letter.source_topic, letter.source_partition, letter.source_offset)
            if value is not None:
                return value
    finally:
        await conn.close()
    raise LookupError(f"no stored original for {letter.key()}")


async def replay(client: Client, letter: DeadLetter, replayed_by: str | None = None) -> DeadLetterReplayed:
    original = await whole_original(client.settings, letter) if letter.original_truncated else None
    topic, key, value, message_id = replayable(letter, original)
    await client.producer.send_and_wait(topic, value, key)
    record = DeadLetterReplayed(position=letter.key(), consumer=letter.consumer,
                                replayed_by=replayed_by or getpass.getuser(), replayed_at=datetime.now(UTC),
                                message_id=message_id)
    await client.send(record)
    return record


async def parked(settings: Settings) -> list[str]:
    """Messages a service staged that Kafka refused for good, one line each, oldest first."""
    conn = await asyncpg.connect(settings.reader_dsn())
    try:
        rows = await conn.fetch(" UNION ALL ".join(
            f"SELECT '{service}' AS service, event_id, topic, length(value) AS size, reason, parked_at "
            f"FROM {service}.outbox_parked" for service in SERVICES) + " ORDER BY parked_at")
    finally:
        await conn.close()
    return [f"{r['parked_at']:%Y-%m-%d %H:%M:%S}  {r['service']:<13} {r['event_id']}  {r['topic']:<30} "
            f"{r['size']:>9} bytes  {r['reason'][:100]}" for r in rows]
