"""The bare pipeline for `oms bench`: the OMS's Kafka hops and Postgres transactions with no business logic.

Each hop consumes a batch, records in one transaction the message ids in an inbox, the state the message changes
(an upsert of its order's row and two journal rows: the OMS writes about three rows of domain state per hop on
this path — saga, timeline, order status, ledger, reservation, decision, fulfilment order) and the messages it
sends in an outbox, then publishes the outbox rows and deletes them in a second one (the relay's work), then
commits the offsets — what every OMS consumer does, minus validation, domain rules and the framework. The hops
that stand for capture's also send the events capture adds (the order accepted and confirmed, and each one's copy
for the channel), to a topic nobody reads. Hops are spread over processes as the saga's hops are spread over the
services.

    python -m ops.baseline PREFIX HOP [HOP ...]
"""

import asyncio
import json
import sys

import asyncpg
import uvloop
from aiokafka import AIOKafkaConsumer

from shared.db import keep_session
from shared.messaging.outbox import make_producer
from shared.settings import KafkaLogin, settings

from .env import load_dev_env

HOPS = 7  # the OMS's confirm path: PlaceOrder, ReserveStock, RouteOrder, AllocateReservation,
#           ReservationAllocated, RequestFulfillment, FulfillmentOrderCreated
PROCESS_HOPS = {"capture": (1, 5, 7), "inventory": (2, 4), "routing": (3,), "fulfillment": (6,)}
EVENTS = {1: 2, 7: 2}  # OrderAccepted and OrderConfirmed, each with its copy on the channel's own topic
EVENTS_TOPIC = "bench.events.v1"
SCHEMA = """
DROP SCHEMA IF EXISTS bench CASCADE;
CREATE SCHEMA bench;
CREATE TABLE bench.inbox (message_key text PRIMARY KEY);
CREATE TABLE bench.state (key bytea PRIMARY KEY, hop int, updated_at timestamptz DEFAULT now());
CREATE TABLE bench.journal (seq bigserial PRIMARY KEY, key bytea, hop int, at timestamptz DEFAULT now());
CREATE TABLE bench.outbox (seq bigserial PRIMARY KEY, hop int, topic text, key bytea, value bytea);
CREATE INDEX ON bench.outbox (hop, seq);
"""


def hop_topic(prefix: str, hop: int) -> str:
    return f"{prefix}bench.hop{hop}.v1"


async def prepare(dsn: str) -> None:
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute(SCHEMA)
    finally:
        await conn.close()


async def run_hop(pool: asyncpg.Pool, producer, login: KafkaLogin, prefix: str, hop: int) -> None:
    source, target, events = hop_topic(prefix, hop), hop_topic(prefix, hop + 1), prefix + EVENTS_TOPIC
    consumer = AIOKafkaConsumer(source, **login.aiokafka(), group_id=f"{prefix}bench-hop{hop}",
                                enable_auto_commit=False, auto_offset_reset="earliest", max_poll_records=500)
    await consumer.start()
    try:
        while True:
            batches = await consumer.getmany(timeout_ms=100, max_records=500)
            records = [r for part in batches.values() for r in part]
            if not records:
                continue
            async with pool.acquire() as conn:
                async with conn.transaction():
                    keys = [f"{hop}:{json.loads(r.value)['id']}" for r in records]
                    fresh = {row[0] for row in await conn.fetch(
                        "INSERT INTO bench.inbox SELECT unnest($1::text[]) ON CONFLICT DO NOTHING RETURNING 1", keys)}
                    if fresh:
                        await _change_state(conn, hop, [r.key for r in records])
                        sends = [(target, r.key, r.value) for r in records]
                        sends += [(events, r.key, r.value) for r in records for _ in range(EVENTS.get(hop, 0))]
                        await conn.executemany(
                            "INSERT INTO bench.outbox (hop, topic, key, value) VALUES ($1, $2, $3, $4)",
                            [(hop, *send) for send in sends])
                async with conn.transaction():
                    rows = await conn.fetch(
                        "SELECT seq, topic, key, value FROM bench.outbox WHERE hop = $1 ORDER BY seq FOR UPDATE", hop)
                    sends = [await producer.send(r["topic"], r["value"], r["key"]) for r in rows]
                    await asyncio.gather(*sends)
                    await conn.execute("DELETE FROM bench.outbox WHERE seq = ANY($1::bigint[])",
                                       [r["seq"] for r in rows])
            await consumer.commit()
    finally:
        await consumer.stop()


async def _change_state(conn: asyncpg.Connection, hop: int, keys: list[bytes]) -> None:
    await conn.execute("INSERT INTO bench.state (key, hop) SELECT DISTINCT unnest($1::bytea[]), $2::int "
                       "ON CONFLICT (key) DO UPDATE SET hop = excluded.hop, updated_at = now()", keys, hop)
    await conn.execute("INSERT INTO bench.journal (key, hop) SELECT k, $2::int FROM unnest($1::bytea[]) AS k, "
                       "generate_series(1, 2)", keys, hop)


async def main(prefix: str, hops: list[int]) -> None:
    config = settings()
    pool = await asyncpg.create_pool(config.admin_dsn(), min_size=len(hops), max_size=len(hops) + 1,
                                     reset=keep_session)  # as the services' pools
    login = config.kafka_login()
    producer = make_producer(login, "bench-baseline")
    await producer.start()
    try:
        await asyncio.gather(*(run_hop(pool, producer, login, prefix, hop) for hop in hops))
    finally:
        await producer.stop()
        await pool.close()


if __name__ == "__main__":
    load_dev_env()
    uvloop.run(main(sys.argv[1], [int(h) for h in sys.argv[2:]]))  # the services' loop: like for like
