"""Reading a topic from the beginning in a test, without a consumer group."""

import asyncio
import json
from collections.abc import Callable

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.structs import ConsumerRecord

from shared.contracts import Contract
from shared.contracts.topics import PARTITIONS
from shared.contracts.topics import every_party as every_party_pattern
from shared.settings import Settings

from ops.waiting import eventually


class TopicWatcher:
    """`every_party`: every party's own part of the topic (`<topic>.<party>`), those made later included."""

    def __init__(self, settings: Settings, topic: str, *, every_party: bool = False):
        self.topic = settings.topic(topic)
        self.pattern = every_party and every_party_pattern(settings.topic_prefix, topic)
        self.records: list[ConsumerRecord] = []
        self._consumer = AIOKafkaConsumer(**settings.kafka_login().aiokafka(), enable_auto_commit=False,
                                          auto_offset_reset="earliest", metadata_max_age_ms=1000)
        self._task: asyncio.Task | None = None

    async def __aenter__(self) -> "TopicWatcher":
        await self._consumer.start()
        if self.pattern:  # without a group: the consumer takes every partition of each topic it finds
            self._consumer.subscribe(pattern=self.pattern)
        else:
            self._consumer.assign([TopicPartition(self.topic, p) for p in range(PARTITIONS)])  # we created them
            await self._consumer.seek_to_beginning()
        self._task = asyncio.create_task(self._collect())
        return self

    async def __aexit__(self, *exc) -> None:
        self._task.cancel()
        await asyncio.gather(self._task, return_exceptions=True)
        await self._consumer.stop()

    async def _collect(self) -> None:
        seen: set[tuple[str, int, int]] = set()
        while True:
            batches = await self._consumer.getmany(timeout_ms=100)
            for records in batches.values():
                # Without a group, a pattern's new topic reassigns every partition, read again from the start.
                fresh = [r for r in records if (r.topic, r.partition, r.offset) not in seen]
                seen.update((r.topic, r.partition, r.offset) for r in fresh)
                self.records.extend(fresh)

    def envelopes(self, predicate: Callable[[dict], bool] = lambda _: True) -> list[dict]:
        return [envelope for envelope, _ in self.matching(predicate)]

    def matching(self, predicate: Callable[[dict], bool]) -> list[tuple[dict, ConsumerRecord]]:
        """The records whose JSON envelope the predicate accepts, each with its envelope."""
        found = []
        for record in self.records:
            try:
                envelope = json.loads(record.value)
            except (TypeError, ValueError, RecursionError):  # a fuzz run's hostile records share the topics
                continue
            if isinstance(envelope, dict) and _accepts(predicate, envelope):
                found.append((envelope, record))
        return found

    async def wait_for(self, predicate: Callable[[dict], bool], *, count: int = 1, timeout: float = 30.0,
                       what: str = "a message") -> list[dict]:
        async def probe():
            matches = self.envelopes(predicate)
            return matches if len(matches) >= count else None

        return await eventually(probe, timeout=timeout, what=f"{what} on {self.topic}")


def of_type(contract: type[Contract], subject: object | None = None) -> Callable[[dict], bool]:
    """Matches envelopes of this contract (and, if given, about this order id or key)."""
    return lambda e: e.get("type") == contract.message_type and (subject is None or e.get("subject") == str(subject))


def _accepts(predicate: Callable[[dict], bool], envelope: dict) -> bool:
    """A hostile envelope (no type, data that is not an object) is not what any test waits for."""
    try:
        return bool(predicate(envelope))
    except (KeyError, TypeError, AttributeError):
        return False
