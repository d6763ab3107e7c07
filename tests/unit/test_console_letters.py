"""The console's dead-letter pages over an in-memory topic: newest first across partitions, a page at a time from
a cursor of offsets per partition, filtered while reading and never past the scan bound; replays found with
their letter; a form's letters read at their place."""

import base64
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from ops.console import letters
from shared.contracts import wrap
from shared.contracts.ops import DeadLetter, DeadLetterReplayed

T0 = datetime(2026, 1, 1, tzinfo=UTC)


@dataclass
class Record:
    partition: int
    offset: int
    timestamp: int
    value: bytes


class Topic:
    """Partitions of records; counts what was read, to hold the scan to its bound."""

    def __init__(self, partitions: int, first: int = 0):
        self.records: dict[int, list[Record]] = {p: [] for p in range(partitions)}
        self.first = first
        self.read_count = 0

    def add(self, partition: int, payload, at: datetime) -> None:
        records = self.records[partition]
        value = wrap(payload, source="test", correlation_id="c").model_dump_json().encode()
        records.append(Record(partition, self.first + len(records), int(at.timestamp() * 1000), value))

    async def bounds(self):
        return {p: (self.first, self.first + len(rs)) for p, rs in self.records.items()}

    async def read(self, partition, start, stop):
        found = [r for r in self.records[partition] if start <= r.offset < stop]
        self.read_count += len(found)
        return found


def letter(n: int, reason: str = "INVALID_PAYLOAD", consumer: str = "oms.capture.orders.commands.v1") -> DeadLetter:
    return DeadLetter(consumer=consumer, source_topic="orders.commands.v1", source_partition=0, source_offset=n,
                      reason=reason, detail=f"letter {n}", original_key_b64=None,
                      original_value_b64=base64.b64encode(b"{}").decode(), failed_at=T0 + timedelta(seconds=n))


def topic_of(count: int, partitions: int = 3, **kwargs) -> Topic:
    """Letter n written at second n, on partition n % partitions."""
    topic = Topic(partitions, **kwargs)
    for n in range(count):
        topic.add(n % partitions, letter(n), T0 + timedelta(seconds=n))
    return topic


def everything(_: DeadLetter) -> bool:
    return True


async def all_pages(topic, wanted=everything, size=10, scan_limit=1000, chunk=4) -> list[letters.Page]:
    pages, before = [], None
    while True:
        found = await letters.page(topic, before, wanted, size=size, scan_limit=scan_limit, chunk=chunk)
        pages.append(found)
        if found.older is None:
            return pages
        before = letters.cursor(letters.cursor_text(found.older))


def numbers(found: letters.Page) -> list[int]:
    return [item.letter.source_offset for item in found.letters]


async def test_pages_go_newest_first_across_partitions_with_nothing_twice_or_left_out():
    pages = await all_pages(topic_of(25, first=100))
    assert [numbers(p) for p in pages] == [list(range(24, 14, -1)), list(range(14, 4, -1)), [4, 3, 2, 1, 0]]
    assert pages[0].older == {0: 105, 1: 105, 2: 105}, "letters 15, 16 and 17 the oldest read"
    assert [item.ref for item in pages[2].letters][-1] == "0/100"


async def test_a_page_reads_only_about_what_it_shows():
    topic = topic_of(3000)
    found = await letters.page(topic, None, everything, size=20, chunk=10)
    assert numbers(found) == list(range(2999, 2979, -1))
    assert found.scanned == 20 and topic.read_count <= 20 + 3 * 10


async def test_a_filter_is_applied_while_reading_and_the_scan_stops_at_its_bound():
    topic = topic_of(60)
    topic.add(1, letter(1000, reason="NOT_JSON", consumer="oms.fulfillment.fulfillment.location-updates.v1"),
              T0 + timedelta(seconds=5.5))
    not_json = lambda item: item.reason == "NOT_JSON"  # noqa: E731
    bounded = await letters.page(topic, None, not_json, size=10, scan_limit=30, chunk=5)
    assert bounded.letters == [] and bounded.bounded and bounded.scanned == 30
    assert topic.read_count <= 30 + 3 * 5
    rest = await letters.page(topic, bounded.older, not_json, size=10, scan_limit=100, chunk=5)
    assert numbers(rest) == [1000] and not rest.bounded and rest.older is None
    fulfillment = lambda item: letters_service(item) == "fulfillment"  # noqa: E731
    assert numbers(await letters.page(topic, None, fulfillment)) == [1000]


def letters_service(item: DeadLetter) -> str:
    from ops.console.app import service_of_consumer
    return service_of_consumer(item.consumer)


async def test_a_letter_carries_the_replays_that_follow_it_and_a_resent_letter_is_shown_once():
    topic = topic_of(6)
    first = letter(4)
    topic.add(1, DeadLetterReplayed(position=first.key(), consumer=first.consumer, replayed_by="ben",
                                    replayed_at=T0 + timedelta(minutes=1), message_id="m"), T0 + timedelta(minutes=1))
    topic.add(2, letter(5), T0 + timedelta(minutes=2))  # the relay sent it again
    found = await letters.page(topic, None, everything)
    assert numbers(found) == [5, 4, 3, 2, 1, 0]
    assert [r.replayed_by for r in found.letters[1].replays] == ["ben"] and found.letters[0].replays == []
    [named] = await letters.at(topic, [(1, 1), (0, 99), (1, 2)])  # (1, 2) is the replay record itself
    assert named.letter.source_offset == 4 and [r.replayed_by for r in named.replays] == ["ben"]


def test_cursors_and_refs_from_links_and_forms():
    assert letters.cursor("0:12,1:7") == {0: 12, 1: 7}
    assert letters.cursor("") is None and letters.cursor("0:x") is None and letters.cursor("garbage") is None
    assert letters.cursor_text({1: 7, 0: 12}) == "0:12,1:7"
    assert letters.ref("3/41") == (3, 41) and letters.ref("3/x") is None and letters.ref("341") is None


async def test_the_letters_a_form_names_on_one_page_are_read_in_one_go():
    topic = topic_of(30, partitions=1)
    named = await letters.at(topic, [(0, 20), (0, 25), (0, 22), (0, 25), (0, 999)])
    assert [item.letter.source_offset for item in named] == [20, 22, 25]
    assert topic.read_count == 10, "offsets 20 to the end, once"


async def test_a_page_counts_the_records_it_could_not_read_as_dead_letters():
    """Only the services write the topic; a record that is not a dead letter (a foreign writer, a JSON escape of
    half a surrogate pair) is not shown, but the page says how many there were rather than hiding them."""
    topic = topic_of(4, partitions=1)
    for n, value in enumerate([b"not json", b'{"specversion":"1.0","data":{"detail":"\\udfff"}}']):
        topic.records[0].append(Record(0, 4 + n, int((T0 + timedelta(seconds=4 + n)).timestamp() * 1000), value))
    found = await letters.page(topic, None, everything)
    assert numbers(found) == [3, 2, 1, 0] and found.unreadable == 2
