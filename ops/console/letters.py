"""The dead-letter topic a page at a time, newest first, never the whole of it: each partition is read backwards
in chunks from where the previous page stopped (a cursor of offsets per partition), the partitions merged by
record time, and the filter applied while reading, up to a bound of records per page. A page whose filter
matched little in that bound says so; the next page goes on from there. Replays (DeadLetterReplayed) share
their letter's key, so its partition, after it: reading newest first meets them before the letter."""

import asyncio
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

from aiokafka import AIOKafkaConsumer, TopicPartition
from pydantic import ValidationError

from shared.contracts import Envelope
from shared.contracts.ops import DeadLetter, DeadLetterReplayed
from shared.contracts.topics import DEAD_LETTERS, PARTITIONS
from shared.settings import Settings

PAGE_SIZE = 20
SCAN_LIMIT = 2000  # records of the topic read at most for one page, whatever the filter
CHUNK = 200  # records read backwards from one partition at a time
READ_TIMEOUT = 15.0


class Record(Protocol):
    partition: int
    offset: int
    timestamp: int
    value: bytes


class Reader(Protocol):
    async def bounds(self) -> dict[int, tuple[int, int]]:
        """Per partition: its first offset still kept, and its end."""

    async def read(self, partition: int, start: int, stop: int) -> list[Record]:
        """The partition's records from `start` up to, not including, `stop`."""


@dataclass
class Shown:
    letter: DeadLetter
    partition: int  # where it is on the dead-letter topic
    offset: int
    replays: list[DeadLetterReplayed] = field(default_factory=list)

    @property
    def position(self) -> str:
        """Where the original was: source topic/partition/offset."""
        return self.letter.key()

    @property
    def ref(self) -> str:
        return f"{self.partition}/{self.offset}"


@dataclass
class Page:
    letters: list[Shown]
    older: dict[int, int] | None  # the cursor of the next page; None: nothing older is left
    scanned: int
    bounded: bool  # the scan stopped at SCAN_LIMIT before the page was full
    unreadable: int = 0  # records read that are not dead letters (nor replays): not shown, only counted


def cursor(text: str) -> dict[int, int] | None:
    """`partition:offset,...` as the page links carry it; anything else is the newest page."""
    try:
        found = {int(p): int(o) for p, o in (pair.split(":") for pair in text.split(",") if pair)}
    except ValueError:
        return None
    return found or None


def cursor_text(older: dict[int, int]) -> str:
    return ",".join(f"{p}:{o}" for p, o in sorted(older.items()))


def ref(text: str) -> tuple[int, int] | None:
    try:
        partition, offset = (int(part) for part in text.split("/"))
    except ValueError:
        return None
    return partition, offset


def decoded(record: Record) -> DeadLetter | DeadLetterReplayed | None:
    try:
        envelope = Envelope.model_validate_json(record.value)
        if envelope.type == DeadLetterReplayed.message_type:
            return DeadLetterReplayed.model_validate(envelope.data)
        return DeadLetter.model_validate(envelope.data)
    except (ValidationError, ValueError):
        return None


async def page(reader: Reader, before: dict[int, int] | None, wanted: Callable[[DeadLetter], bool],
               size: int = PAGE_SIZE, scan_limit: int = SCAN_LIMIT, chunk: int = CHUNK) -> Page:
    """The `size` newest letters `wanted` below `before` (per partition; None: from the end), reading at most
    about `scan_limit` records."""
    bounds = await reader.bounds()
    upper = {p: min(end, (before or {}).get(p, end)) for p, (_, end) in bounds.items()}
    buffers: dict[int, list[Record]] = {}
    letters: list[Shown] = []
    replays: dict[tuple[str, str], list[DeadLetterReplayed]] = defaultdict(list)
    seen: set[tuple[str, str]] = set()
    scanned = unreadable = 0
    while len(letters) < size and scanned < scan_limit:
        for partition, (first, _) in bounds.items():
            while not buffers.get(partition) and upper[partition] > first:
                start = max(first, upper[partition] - chunk)
                buffers[partition] = sorted(await reader.read(partition, start, upper[partition]),
                                            key=lambda r: r.offset)
                if not buffers[partition]:
                    upper[partition] = start  # nothing readable there (a gap in the offsets)
        heads = [(records[-1].timestamp, partition) for partition, records in buffers.items() if records]
        if not heads:
            break
        _, partition = max(heads)
        record = buffers[partition].pop()
        upper[partition] = record.offset
        scanned += 1
        message = decoded(record)
        if message is None:
            unreadable += 1
        elif isinstance(message, DeadLetterReplayed):
            replays[(message.consumer, message.position)].append(message)
        elif isinstance(message, DeadLetter) and (key := (message.consumer, message.key())) not in seen:
            seen.add(key)  # a relay's re-send is the same letter
            if wanted(message):
                letters.append(Shown(message, partition, record.offset))
    for shown in letters:
        shown.replays = sorted(replays[(shown.letter.consumer, shown.position)], key=lambda r: r.replayed_at)
    left = any(upper[p] > first for p, (first, _) in bounds.items())
    return Page(letters, dict(upper) if left else None, scanned, len(letters) < size and left, unreadable)


async def at(reader: Reader, refs: list[tuple[int, int]]) -> list[Shown]:
    """The letters at these places of the topic (what a form names), with the replays that follow each in its
    partition, up to SCAN_LIMIT records after it. Places near each other (one page's) are read in one go."""
    bounds = await reader.bounds()
    found = []
    for partition, offsets in sorted(_by_partition(refs, bounds).items()):
        for cluster in _clusters(offsets):
            stop = min(bounds[partition][1], cluster[-1] + 1 + SCAN_LIMIT)
            messages = {r.offset: decoded(r) for r in await reader.read(partition, cluster[0], stop)}
            for offset in cluster:
                if isinstance(letter := messages.get(offset), DeadLetter):
                    found.append(Shown(letter, partition, offset, _replays_of(letter, messages, offset)))
    return found


def _by_partition(refs: list[tuple[int, int]], bounds: dict[int, tuple[int, int]]) -> dict[int, list[int]]:
    found: dict[int, set[int]] = defaultdict(set)
    for partition, offset in refs:
        if partition in bounds and bounds[partition][0] <= offset < bounds[partition][1]:
            found[partition].add(offset)
    return {partition: sorted(offsets) for partition, offsets in found.items()}


def _clusters(offsets: list[int]) -> list[list[int]]:
    """Sorted offsets split where two are more than SCAN_LIMIT apart."""
    clusters: list[list[int]] = []
    for offset in offsets:
        if clusters and offset - clusters[-1][-1] <= SCAN_LIMIT:
            clusters[-1].append(offset)
        else:
            clusters.append([offset])
    return clusters


def _replays_of(letter: DeadLetter, messages: dict[int, DeadLetter | DeadLetterReplayed | None],
                offset: int) -> list[DeadLetterReplayed]:
    after = (messages[o] for o in sorted(messages) if offset < o <= offset + SCAN_LIMIT)
    return [m for m in after if isinstance(m, DeadLetterReplayed)
            and (m.consumer, m.position) == (letter.consumer, letter.key())]


class TopicReader:
    """The dead-letter topic read as ops, without a consumer group: one partition assigned at a time."""

    def __init__(self, settings: Settings):
        self.topic = settings.topic(DEAD_LETTERS)
        self.consumer = AIOKafkaConsumer(**settings.kafka_login().aiokafka(), enable_auto_commit=False,
                                         auto_offset_reset="earliest")

    async def __aenter__(self) -> "TopicReader":
        await self.consumer.start()
        return self

    async def __aexit__(self, *exc) -> None:
        await self.consumer.stop()

    async def bounds(self) -> dict[int, tuple[int, int]]:
        partitions = [TopicPartition(self.topic, p) for p in range(PARTITIONS)]
        firsts = await self.consumer.beginning_offsets(partitions)
        ends = await self.consumer.end_offsets(partitions)
        return {tp.partition: (firsts[tp], ends[tp]) for tp in partitions}

    async def read(self, partition: int, start: int, stop: int) -> list[Record]:
        tp = TopicPartition(self.topic, partition)
        self.consumer.assign([tp])
        self.consumer.seek(tp, start)
        found = []
        async with asyncio.timeout(READ_TIMEOUT):
            while await self.consumer.position(tp) < stop:
                batch = await self.consumer.getmany(tp, timeout_ms=500, max_records=stop - start)
                found += [record for record in batch.get(tp, []) if record.offset < stop]
        return found
