"""The bare pipeline for `oms bench`: the OMS's Kafka hops and Postgres transactions with no business logic.

Each hop consumes a batch, records the message ids in an inbox and the forwarded messages in an outbox in one
transaction, then publishes the outbox rows and deletes them in a second one (the relay's work), then commits
the offsets — what every OMS consumer does, minus validation, domain rules and the framework. Hops are spread
over processes as the saga's hops are spread over the services.

    python -m ops.baseline PREFIX HOP [HOP ...]
"""

import asyncio
import json
import sys

import asyncpg
from aiokafka import AIOKafkaConsumer

from shared.db import keep_session
from shared.messaging.outbox import make_producer
from shared.settings import KafkaLogin, settings

from .env import load_dev_env

HOPS = 9  # PlaceOrder, ReserveStock, StockReserved, RouteOrder, OrderRouted, AllocateReservation,
#           ReservationAllocated, RequestFulfillment, FulfillmentOrderCreated
PROCESS_HOPS = {"capture": (1, 3, 5, 7, 9), "inventory": (2, 6), "routing": (4,), "fulfillment": (8,)}
SCHEMA = """
CREATE SCHEMA IF NOT EXISTS bench;
CREATE TABLE IF NOT EXISTS bench.inbox (message_key text PRIMARY KEY);
CREATE TABLE IF NOT EXISTS bench.outbox (seq bigserial PRIMARY KEY, topic text, key bytea, value bytea);
"""


def hop_topic(prefix: str, hop: int) -> str:
    return f"{prefix}bench.hop{hop}.v1"


async def prepare(dsn: str) -> None:
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute(SCHEMA)
        await conn.execute("TRUNCATE bench.inbox, bench.outbox")
    finally:
        await conn.close()


async def run_hop(pool: asyncpg.Pool, producer, login: KafkaLogin, prefix: str, hop: int) -> None:
    source, target = hop_topic(prefix, hop), hop_topic(prefix, hop + 1)
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
                        await conn.executemany("INSERT INTO bench.outbox (topic, key, value) VALUES ($1, $2, $3)",
                                               [(target, r.key, r.value) for r in records])
                async with conn.transaction():
                    rows = await conn.fetch(
                        "SELECT seq, topic, key, value FROM bench.outbox WHERE topic = $1 ORDER BY seq FOR UPDATE",
                        target)
                    sends = [await producer.send(r["topic"], r["value"], r["key"]) for r in rows]
                    await asyncio.gather(*sends)
                    await conn.execute("DELETE FROM bench.outbox WHERE seq = ANY($1::bigint[])", [r["seq"] for r in rows])
            await consumer.commit()
    finally:
        await consumer.stop()


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
    asyncio.run(main(sys.argv[1], [int(h) for h in sys.argv[2:]]))
