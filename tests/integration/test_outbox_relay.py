"""The outbox relay on real Postgres and Kafka: two relays (two instances of a service) publish one outbox at
once, each its share of the slots, every message once and each key's messages in the order they were staged."""

import asyncio
import json
import uuid
from collections import defaultdict
from contextlib import AsyncExitStack

import pytest
from aiokafka.errors import KafkaConnectionError

from ops.waiting import eventually
from shared.contracts.topics import FULFILLMENT_WORK, ORDER_EVENTS, party_topic_of
from shared.db import create_pool
from shared.messaging.outbox import OutboxRelay, OutboxRow, make_producer, notify_channel, write
from shared.messaging.topics import ensure_topics
from shared.messaging.unit_of_work import UnitOfWork

from ..support.topics import TopicWatcher

pytestmark = pytest.mark.integration

TOPIC = "test.relay.v1"
KEYS, PER_KEY = 40, 25


class CountingRelay(OutboxRelay):
    published = 0
    batches = 0
    waits = 0

    async def _wait_for_work(self) -> None:
        self.waits += 1
        await super()._wait_for_work()

    async def publish_pending(self):
        self.batches += 1
        return await super().publish_pending()

    async def _publish(self, rows):
        self.published += len(rows)
        return await super()._publish(rows)


@pytest.fixture
async def outbox(config, admin):
    """A pool on an outbox of this test's own (the session's services relay their own schemas' outboxes)."""
    schema = f"relay_{uuid.uuid4().hex[:8]}"
    async with admin.acquire() as conn:
        await conn.execute(f"CREATE SCHEMA {schema}")
        for table in ("outbox", "outbox_parked"):
            await conn.execute(f"CREATE TABLE {schema}.{table} (LIKE routing.{table} INCLUDING ALL)")
    await ensure_topics(config, names=[TOPIC])
    pool = await create_pool(config.admin_dsn(), schema)
    yield pool, schema
    await pool.close()
    async with admin.acquire() as conn:
        await conn.execute(f"DROP SCHEMA {schema} CASCADE")


async def test_two_relays_share_the_outbox_and_keep_each_keys_order(config, outbox):
    pool, schema = outbox
    keys = [f"K-{uuid.uuid4().hex[:8]}" for _ in range(KEYS)]
    rows = [OutboxRow(uuid.uuid4(), TOPIC, key, json.dumps({"key": key, "n": n}).encode(), {})
            for n in range(PER_KEY) for key in keys]
    relays = [CountingRelay(pool, lambda: make_producer(config.kafka_login(), f"relay-{i}"), schema,
                            config.topic_prefix, batch_size=50) for i in range(2)]
    async with TopicWatcher(config, TOPIC) as topic:
        running = [asyncio.create_task(relay.run()) for relay in relays]
        try:
            await eventually(lambda: _all_waiting(relays), what="both relays started, found nothing, waiting")
            async with pool.acquire() as conn:
                await write(conn, rows, schema)  # NOTIFY wakes both
            await eventually(lambda: pool.fetchval("SELECT count(*) = 0 FROM outbox"), what="the outbox published")
            mine = set(keys)
            records = await eventually(lambda: _ours(topic, mine, len(rows)), what="every message on the topic")
        finally:
            for task in running:
                task.cancel()
            await asyncio.gather(*running, return_exceptions=True)

    assert all(relay.published for relay in relays), [relay.published for relay in relays]
    assert sum(relay.published for relay in relays) == len(rows)
    by_key = defaultdict(list)
    for record in sorted(records, key=lambda r: (r.partition, r.offset)):
        message = json.loads(record.value)
        by_key[message["key"]].append(message["n"])
    assert all(sequence == list(range(PER_KEY)) for sequence in by_key.values()), "each key once, in order"


async def test_a_claim_takes_the_slots_that_have_rows_and_a_drained_outbox_waits_for_a_wake(config, outbox):
    """Each claim is a transaction: it takes the slots that have rows (at most half of all slots), a second claim
    follows only if rows are left, and then the relay waits for a wake (a commit that staged rows) instead of
    claiming again to find nothing."""
    pool, schema = outbox
    relay = CountingRelay(pool, lambda: make_producer(config.kafka_login(), "relay-rounds"), schema,
                          config.topic_prefix, idle_poll_seconds=3600)
    async with pool.acquire() as conn:
        keys = [key for slot in range(16) for key in await _keys(conn, range(slot, slot + 1), 2)]
        await write(conn, _rows(keys), schema)  # rows in every slot: two claims
    running = asyncio.create_task(relay.run())
    try:
        await eventually(lambda: relay.waits == 1, what="the relay waiting after its first round")
        assert (relay.published, relay.batches) == (32, 3)  # and a third as it found itself alone (OutboxRelay)
        for round_, slots in enumerate([range(8, 16), range(8)], start=2):  # either half: one claim takes all
            async with pool.acquire() as conn:
                await write(conn, _rows(await _keys(conn, slots, 5)), schema)  # its NOTIFY wakes the relay
            await eventually(lambda r=round_: relay.waits == r, what=f"the relay waiting after round {round_}")
            assert (relay.published, relay.batches) == (32 + 5 * (round_ - 1), round_ + 2)
    finally:
        running.cancel()
        await asyncio.gather(running, return_exceptions=True)


async def test_a_relay_whose_listening_connection_is_lost_listens_again(config, outbox, admin):
    """The relay learns of new rows from NOTIFY alone: if its LISTEN connection goes (terminated, a network cut),
    it must not fall back on its idle poll (an hour here) for every message."""
    pool, schema = outbox
    relay = CountingRelay(pool, lambda: make_producer(config.kafka_login(), "relay-listener"), schema,
                          config.topic_prefix, idle_poll_seconds=3600)
    running = asyncio.create_task(relay.run())
    try:
        await eventually(lambda: relay.waits == 1, what="the relay waiting")
        [listener] = await _listeners(admin, schema)
        assert await admin.fetchval("SELECT pg_terminate_backend($1)", listener)
        await eventually(lambda: _listening_again(admin, schema, listener),
                         what="the relay listening on a new connection")
        async with pool.acquire() as conn:
            await write(conn, _rows(await _keys(conn, range(16), 3)), schema)
        await eventually(lambda: relay.published == 3, timeout=20, what="the rows published, woken by NOTIFY")
    finally:
        running.cancel()
        await asyncio.gather(running, return_exceptions=True)


async def test_a_relay_is_woken_by_its_own_process_commits_without_a_notify(config, outbox):
    """A unit of work in the relay's process wakes the relay itself: no NOTIFY, which would signal every
    listening backend of the database (every service's relay), and the rows still go at once (the idle poll is an
    hour here)."""
    pool, schema = outbox
    relay = CountingRelay(pool, lambda: make_producer(config.kafka_login(), "relay-woken"), schema,
                          config.topic_prefix, idle_poll_seconds=3600)
    running = asyncio.create_task(relay.run())
    async with Notifications(pool, schema) as heard:
        try:
            await eventually(lambda: relay.waits == 1, what="the relay waiting")
            async with pool.acquire() as conn:
                async with conn.transaction():
                    uow = UnitOfWork(conn, schema, frozenset({TOPIC}), config, relay=relay)
                    uow.staged += _rows(await _keys(conn, range(16), 3))
                    await uow.flush()
                uow.committed()
            await eventually(lambda: relay.published == 3, what="the rows published, the relay woken in-process")
        finally:
            running.cancel()
            await asyncio.gather(running, return_exceptions=True)
    assert heard.payloads == []


async def test_a_claim_commits_without_waiting_for_the_disk_and_leaves_the_pool_durable(config, outbox):
    """A claim's transaction only deletes rows that Kafka has acknowledged: losing it in a database crash means
    publishing them again, which consumers skip. So it commits asynchronously — that transaction alone: the
    connection goes back to the pool committing durably, as every consumer's effect must."""
    pool, schema = outbox
    relay = CountingRelay(pool, lambda: make_producer(config.kafka_login(), "relay-async"), schema,
                          config.topic_prefix, idle_poll_seconds=3600)
    during_claim: list[tuple[int, str]] = []
    sort_out = relay.party_topics.sort_out

    async def observed(conn, producer, rows):
        during_claim.append((conn.get_server_pid(), await conn.fetchval("SHOW synchronous_commit")))
        return await sort_out(conn, producer, rows)

    relay.party_topics.sort_out = observed
    running = asyncio.create_task(relay.run())
    try:
        await eventually(lambda: relay.waits == 1, what="the relay waiting")
        async with pool.acquire() as conn:
            await write(conn, _rows(await _keys(conn, range(16), 3)), schema)
        await eventually(lambda: relay.published == 3, what="the rows published")
        await eventually(lambda: relay.waits == 2, what="the relay waiting again, its claim's connection released")
    finally:
        running.cancel()
        await asyncio.gather(running, return_exceptions=True)
    claimed_on = {pid for pid, _ in during_claim}
    assert {setting for _, setting in during_claim} == {"off"}
    async with AsyncExitStack() as stack:  # every connection of the pool: the relay's listener held one more
        held = [await stack.enter_async_context(pool.acquire()) for _ in range(pool.get_size())]
        after = {conn.get_server_pid(): await conn.fetchval("SHOW synchronous_commit") for conn in held}
    assert claimed_on <= after.keys(), (claimed_on, after)
    assert set(after.values()) == {"on"}


async def test_a_relay_that_finds_rows_in_a_slot_another_holds_wakes_the_other(config, outbox, admin):
    """The other relay may have claimed before those rows committed: told, it claims again. Two relays, both
    polling once an hour; the test holds one slot's lock as a relay in the middle of a round would."""
    pool, schema = outbox
    relays = [CountingRelay(pool, lambda: make_producer(config.kafka_login(), f"relay-told-{i}"), schema,
                            config.topic_prefix, idle_poll_seconds=3600) for i in range(2)]
    running = [asyncio.create_task(relay.run()) for relay in relays]
    async with Notifications(pool, schema) as heard, admin.acquire() as holder:
        try:
            await eventually(lambda: _all_waiting(relays), what="both relays waiting")
            holding = holder.transaction()
            await holding.start()
            await holder.execute("SELECT pg_advisory_xact_lock(hashtext($1), 3)", f"outbox:{schema}")
            async with pool.acquire() as conn:
                held, free = await _keys(conn, range(3, 4), 1), await _keys(conn, range(9, 10), 1)
                await write(conn, _rows(held + free), schema, notify=False)
            relays[0].wake()
            await eventually(lambda: relays[0]._token in heard.payloads, what="the first relay telling the others")
            assert sum(relay.published for relay in relays) == 1  # the free slot's row
            await holding.commit()
            await eventually(lambda: sum(relay.published for relay in relays) == 2,
                             what="the held slot's row published once its holder let it go")
        finally:
            for task in running:
                task.cancel()
            await asyncio.gather(*running, return_exceptions=True)


async def test_a_relay_alone_hands_off_what_its_process_commits_and_claims_what_others_stage(config, outbox):
    """The only relay of its outbox publishes the rows its own process commits as they are handed over, without a
    claim, and deletes them once acknowledged; rows another process stages (with a NOTIFY) are still claimed."""
    pool, schema = outbox
    relay = CountingRelay(pool, lambda: make_producer(config.kafka_login(), "relay-alone"), schema,
                          config.topic_prefix, idle_poll_seconds=3600)
    running = asyncio.create_task(relay.run())
    try:
        await eventually(lambda: relay.handing_off and relay.waits >= 1, what="the relay alone, handing off")
        claims = relay.batches
        await _commit(pool, schema, relay, _rows(await _keys_of(pool, range(16), 5)))
        await eventually(lambda: relay.published == 5, what="the rows handed over published")
        await eventually(lambda: pool.fetchval("SELECT count(*) = 0 FROM outbox"), what="the rows deleted")
        assert relay.batches == claims, "published without a claim"
        async with pool.acquire() as conn:
            await write(conn, _rows(await _keys(conn, range(16), 3)), schema)
        await eventually(lambda: relay.published == 8, what="the rows another process staged, claimed")
        assert relay.batches > claims
    finally:
        running.cancel()
        await asyncio.gather(running, return_exceptions=True)


async def test_a_relay_handing_off_holds_work_for_a_party_without_a_topic_and_skips_its_copies(config, outbox):
    """What a claim does with a party's rows, the hand-off does too: work for a location whose topic does not
    exist yet is held (parked, NO_PARTY_TOPIC), a channel's copy of an event without a topic of its own skipped;
    both leave the outbox."""
    pool, schema = outbox
    relay = CountingRelay(pool, lambda: make_producer(config.kafka_login(), "relay-parties"), schema,
                          config.topic_prefix, idle_poll_seconds=3600)
    party = f"NOPE{uuid.uuid4().hex[:6].upper()}"
    work, copy = party_topic_of(FULFILLMENT_WORK, party), party_topic_of(ORDER_EVENTS, party)
    running = asyncio.create_task(relay.run())
    try:
        await eventually(lambda: relay.handing_off and relay.waits >= 1, what="the relay alone, handing off")
        claims = relay.batches
        await _commit(pool, schema, relay, [OutboxRow(uuid.uuid4(), topic, "K-1", b"{}", {}) for topic in (work, copy)],
                      writes={work, copy})
        await eventually(lambda: pool.fetchval("SELECT count(*) = 0 FROM outbox"), what="the rows gone from the outbox")
        parked = await pool.fetch("SELECT topic, reason FROM outbox_parked")
    finally:
        running.cancel()
        await asyncio.gather(running, return_exceptions=True)
    assert [(r["topic"], r["reason"].split(":")[0]) for r in parked] == [(work, "NO_PARTY_TOPIC")]
    assert (relay.published, relay.batches) == (0, claims)


async def test_work_held_for_a_party_goes_out_before_work_handed_off_after_its_topic_exists(config, outbox):
    """Work for a location without a topic is held; once ops has created the topic, what was held is put back in
    the outbox and goes out first, even when more work is handed off at that very moment."""
    pool, schema = outbox
    relay = ReleasingRelay(pool, lambda: make_producer(config.kafka_login(), "relay-release"), schema,
                           config.topic_prefix, idle_poll_seconds=3600)
    work = party_topic_of(FULFILLMENT_WORK, f"NEW{uuid.uuid4().hex[:6].upper()}")

    def numbered(n: int) -> list[OutboxRow]:
        return [OutboxRow(uuid.uuid4(), work, "K-1", json.dumps({"key": "K-1", "n": n}).encode(), {})]

    relay.after_release = lambda: _commit(pool, schema, relay, numbered(2), writes={work})
    running = asyncio.create_task(relay.run())
    try:
        await eventually(lambda: relay.handing_off and relay.waits >= 1, what="the relay alone, handing off")
        for n in range(2):
            await _commit(pool, schema, relay, numbered(n), writes={work})
        await eventually(lambda: pool.fetchval("SELECT count(*) = 2 FROM outbox_parked"), what="both held")
        await ensure_topics(config, names=[work])
        relay.wake()  # a round, as its idle poll (an hour here) would bring
        async with TopicWatcher(config, work) as topic:
            await eventually(lambda: relay.published == 3, what="the held work and the new, published")
            records = await eventually(lambda: _ours(topic, {"K-1"}, 3), what="the work on the topic")
    finally:
        running.cancel()
        await asyncio.gather(running, return_exceptions=True)
    assert _first_seen_in_order(records) == {"K-1": [0, 1, 2]}


class ReleasingRelay(CountingRelay):
    """Tries to release held work every round, and commits more work the moment some was released."""
    after_release = None

    async def _release_held(self, every_seconds: float = 5.0) -> None:
        await super()._release_held(every_seconds=0)
        if self._claim_due and self.after_release is not None:
            commit, self.after_release = self.after_release, None
            await commit()


async def test_a_relay_joining_one_that_hands_off_waits_until_it_shares_and_each_keys_order_holds(config, outbox):
    """A second instance starts while the first hands off, and writes the same keys once its relay has joined (a
    rebalance gave it their partitions): the first has published what it was handed and claims from then on, so
    each key's messages are on the topic in the order they were committed. When the second stops, the first is
    alone again and hands off again."""
    pool, schema = outbox
    first, second = [CountingRelay(pool, lambda i=i: make_producer(config.kafka_login(), f"relay-join-{i}"), schema,
                                   config.topic_prefix, idle_poll_seconds=0.2) for i in range(2)]
    keys = await _keys_of(pool, range(16), 24)
    written: dict[str, int] = defaultdict(int)

    async def write_round(relay: OutboxRelay) -> None:
        await relay.joined()
        rows = [OutboxRow(uuid.uuid4(), TOPIC, key, json.dumps({"key": key, "n": written[key]}).encode(), {})
                for key in keys]
        await _commit(pool, schema, relay, rows)
        for key in keys:
            written[key] += 1

    async with TopicWatcher(config, TOPIC) as topic:
        running = [asyncio.create_task(first.run())]
        try:
            await eventually(lambda: first.handing_off, what="the first relay alone, handing off")
            for _ in range(5):
                await write_round(first)
            running.append(asyncio.create_task(second.run()))
            while not second._joined.is_set():
                await write_round(first)  # committed while the second waits: handed off, or claimed once shared
            assert not first.handing_off, "the second relay joined while the first still handed off"
            for round_ in range(10):
                await write_round([first, second][round_ % 2])
            assert not (first.handing_off or second.handing_off)
            running.pop().cancel()
            await eventually(lambda: first.handing_off, what="the first relay alone again, handing off")
            await write_round(first)
            await eventually(lambda: pool.fetchval("SELECT count(*) = 0 FROM outbox"), what="the outbox published")
            records = await eventually(lambda: _ours(topic, set(keys), sum(written.values())),
                                       what="every message on the topic")
        finally:
            for task in running:
                task.cancel()
            await asyncio.gather(*running, return_exceptions=True)
    assert _first_seen_in_order(records) == {key: list(range(written[key])) for key in keys}


async def test_a_hand_off_that_fails_leaves_its_rows_to_be_claimed_in_order(config, outbox):
    """Kafka fails the relay while it publishes what it was handed: the run ends, the rows stay in the outbox, the
    rows committed meanwhile too (not handed: the relay has left), and the next run claims them all, in order,
    before it hands off again."""
    pool, schema = outbox
    relay = FailingOnceRelay(pool, lambda: make_producer(config.kafka_login(), "relay-fails"), schema,
                             config.topic_prefix, idle_poll_seconds=3600)
    keys = await _keys_of(pool, range(16), 24)
    rounds = 12
    async with TopicWatcher(config, TOPIC) as topic:
        running = asyncio.create_task(relay.run())
        try:
            await eventually(lambda: relay.handing_off, what="the relay alone, handing off")
            for n in range(rounds):
                rows = [OutboxRow(uuid.uuid4(), TOPIC, key, json.dumps({"key": key, "n": n}).encode(), {})
                        for key in keys]
                relay.fail_next = n == 3
                await _commit(pool, schema, relay, rows)
                if n == 3:
                    await eventually(lambda: relay.failed, what="the hand-off failed")
            await eventually(lambda: relay.handing_off, what="the relay handing off again")
            await eventually(lambda: pool.fetchval("SELECT count(*) = 0 FROM outbox"), what="the outbox published")
            records = await eventually(lambda: _ours(topic, set(keys), len(keys) * rounds),
                                       what="every message on the topic")
        finally:
            running.cancel()
            await asyncio.gather(running, return_exceptions=True)
    assert _first_seen_in_order(records) == {key: list(range(rounds)) for key in keys}


class FailingOnceRelay(CountingRelay):
    fail_next = False
    failed = False

    async def _publish(self, rows):
        if self.fail_next:
            self.fail_next, self.failed = False, True
            raise KafkaConnectionError("the broker went away (test)")
        return await super()._publish(rows)


async def _commit(pool, schema: str, relay: OutboxRelay, rows: list[OutboxRow], writes=frozenset({TOPIC})) -> None:
    """Stage rows as a unit of work in the relay's process does, and hand them over once committed."""
    async with pool.acquire() as conn:
        async with conn.transaction():
            uow = UnitOfWork(conn, schema, frozenset(writes), None, relay=relay)
            uow.staged += rows
            await uow.flush()
        uow.committed()


async def _keys_of(pool, slots: range, count: int) -> list[str]:
    async with pool.acquire() as conn:
        return await _keys(conn, slots, count)


def _first_seen_in_order(records) -> dict[str, list[int]]:
    """Each key's message numbers as consumers apply them: in topic order, a message seen before skipped."""
    by_key: dict[str, list[int]] = defaultdict(list)
    for record in sorted(records, key=lambda r: (r.partition, r.offset)):
        message = json.loads(record.value)
        if message["n"] not in by_key[message["key"]]:
            by_key[message["key"]].append(message["n"])
    return dict(by_key)


async def _listeners(admin, schema: str) -> list[int]:
    """The backends of the relays running on `schema`: each holds its PRESENCE lock on its listening connection."""
    return [r["pid"] for r in await admin.fetch(
        """SELECT DISTINCT pid FROM pg_locks WHERE locktype = 'advisory' AND granted AND objsubid = 2
           AND classid = hashtext($1)::oid AND objid = $2::int4::oid""", f"outbox:{schema}", OutboxRelay.PRESENCE)]


async def _listening_again(admin, schema: str, lost: int) -> bool:
    """A relay listens before it takes its PRESENCE lock: holding it on another connection, it listens again."""
    return [pid for pid in await _listeners(admin, schema) if pid != lost] != []


class Notifications:
    """What is NOTIFYed on the outbox's channel while it is open."""

    def __init__(self, pool, schema: str):
        self.pool, self.channel, self.payloads = pool, notify_channel(schema), []

    async def __aenter__(self) -> "Notifications":
        self.conn = await self.pool.acquire()
        await self.conn.add_listener(self.channel, self._heard)
        return self

    def _heard(self, _connection, _pid, _channel, payload: str) -> None:
        self.payloads.append(payload)

    async def __aexit__(self, *_) -> None:
        await self.conn.remove_listener(self.channel, self._heard)
        await self.pool.release(self.conn)


async def _keys(conn, slots: range, count: int) -> list[str]:
    """Fresh message keys whose outbox slot is one of `slots` (the outbox's generated column)."""
    candidates = [f"K-{uuid.uuid4().hex[:8]}" for _ in range(count * 200)]
    rows = await conn.fetch("SELECT key FROM unnest($1::text[]) AS key WHERE (hashtext(key) & 15) = ANY($2::int[])",
                            candidates, list(slots))
    keys = [row["key"] for row in rows][:count]
    assert len(keys) == count, keys
    return keys


def _rows(keys: list[str]) -> list[OutboxRow]:
    return [OutboxRow(uuid.uuid4(), TOPIC, key, b"{}", {}) for key in keys]


async def _all_waiting(relays: list[CountingRelay]) -> bool:
    return all(relay.waits >= 1 for relay in relays)


def _ours(topic: TopicWatcher, keys: set[str], count: int) -> list | None:
    records = [r for r in topic.records if r.key and r.key.decode() in keys]
    return records if len(records) >= count else None
