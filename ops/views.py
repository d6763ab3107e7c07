"""The tracking service's ops side: its channels' API keys, its OpenAPI document, and rebuilding its read model by
replaying the topics.

A rebuild reads the compacted history topic (each order's events up to its last change: orders older than the
other topics' retention) and then every timeline topic from its start into fresh tables (`rebuild_events`,
`rebuild_orders`) with the service's own code, then, holding the live tables against writes (the live consumer
waits), reads what arrived meanwhile and swaps the fresh tables in, in one transaction. Events the live consumer
takes afterwards that the rebuild already holds change nothing (events are kept once, views recomputed from them)."""

import json
import re
import secrets
from contextlib import suppress
from dataclasses import dataclass, field
from pathlib import Path
from uuid import UUID

import asyncpg
from pydantic import ValidationError

from services.tracking.api import build_api
from services.tracking.app import SERVICE, TIMELINE_TOPICS
from services.tracking.domain import TimelineEvent
from services.tracking.handlers import events_of, timeline_event
from services.tracking.store import Tables, add_api_key, record_events
from shared.contracts import REGISTRY, Contract, Envelope
from shared.contracts.base import refuse_nul_characters
from shared.contracts.topics import TRACKING_ORDER_HISTORY
from shared.contracts.tracking import OrderHistory
from shared.db import create_pool
from shared.messaging.topics import ensure_topics
from shared.settings import Settings

from . import history
from .env import ROOT
from .principals import PARTY_KINDS, party_topic

OPENAPI_PATH = ROOT / "docs" / "openapi.json"
FRESH = Tables(events="rebuild_events", orders="rebuild_orders")
CHUNK = 2000  # records applied per statement batch while replaying


def render_openapi() -> str:
    return json.dumps(build_api(lambda: None).openapi(), indent=2) + "\n"


def write_openapi(path: Path = OPENAPI_PATH) -> Path:
    path.write_text(render_openapi())
    return path


async def add_key(settings: Settings, channel: str) -> str:
    """A new API key for the channel (stored hashed; returned once) and the channel's command topic, which HTTP
    intake writes to."""
    if not re.match(PARTY_KINDS["channel"].name_pattern, channel):
        raise ValueError(f"{channel!r} is not a channel name ({PARTY_KINDS['channel'].name_pattern})")
    key = f"oms_{secrets.token_urlsafe(32)}"
    await ensure_topics(settings, names=[party_topic("channel", channel)])
    conn = await asyncpg.connect(settings.owner_dsn("tracking"), server_settings={"search_path": "tracking"})
    try:
        await add_api_key(conn, channel, key)
    finally:
        await conn.close()
    return key


@dataclass
class Replayed:
    """What a rebuild read: events, orders, and the bytes of the records on each topic (key, value, headers)."""

    events: int = 0
    orders: int = 0
    bytes: dict[str, int] = field(default_factory=dict)
    # Orders whose last record on the history topic is a tombstone (purged after their retention): the topic may
    # not have been compacted yet, so their earlier histories were read too, and are dropped again.
    purged: set[UUID] = field(default_factory=set)

    def bytes_per_order(self, topic: str) -> float:
        return self.bytes.get(topic, 0) / self.orders if self.orders else 0.0


async def _keep_storage_parameters(conn: asyncpg.Connection, fresh: dict[str, str]) -> None:
    """LIKE ... INCLUDING ALL leaves out the table's storage parameters (the views' fillfactor): set them too."""
    for live, new in fresh.items():
        options = await conn.fetchval("SELECT reloptions FROM pg_class WHERE oid = to_regclass($1)", live)
        if options:
            await conn.execute(f"ALTER TABLE {new} SET ({', '.join(options)})")


async def rebuild(settings: Settings) -> Replayed:
    pool = await create_pool(settings.owner_dsn("tracking"), "tracking", min_size=1, max_size=1)
    replayed = Replayed()
    try:
        async with pool.acquire() as conn:
            await conn.execute(f"""DROP TABLE IF EXISTS {FRESH.events}, {FRESH.orders};
                                   CREATE TABLE {FRESH.events} (LIKE events INCLUDING ALL);
                                   CREATE TABLE {FRESH.orders} (LIKE orders INCLUDING ALL)""")
            await _keep_storage_parameters(conn, {"events": FRESH.events, "orders": FRESH.orders})
            started = {topic: await history.end_offsets(settings, topic) for topic in TIMELINE_TOPICS}
            for topic in (TRACKING_ORDER_HISTORY, *TIMELINE_TOPICS):
                await _replay(conn, settings, topic, None, replayed)
                if topic == TRACKING_ORDER_HISTORY:
                    await _drop_purged(conn, replayed.purged)
            async with conn.transaction():
                await conn.execute("LOCK TABLE events, orders IN EXCLUSIVE MODE")  # the live consumer waits
                for topic in TIMELINE_TOPICS:
                    await _replay(conn, settings, topic, started[topic], replayed)
                await conn.execute(f"""ALTER TABLE events RENAME TO events_replaced;
                                       ALTER TABLE orders RENAME TO orders_replaced;
                                       ALTER TABLE {FRESH.events} RENAME TO events;
                                       ALTER TABLE {FRESH.orders} RENAME TO orders;
                                       DROP TABLE events_replaced, orders_replaced""")
            replayed.orders = await conn.fetchval("SELECT count(DISTINCT order_id) FROM events")
    finally:
        await pool.close()
    return replayed


async def _replay(conn: asyncpg.Connection, settings: Settings, topic: str, since: dict[int, int] | None,
                  replayed: Replayed) -> None:
    chunk: list[TimelineEvent] = []
    async for record in history.records(settings, topic, since):
        if since is None:  # the catch-up may read some records again
            replayed.bytes[topic] = replayed.bytes.get(topic, 0) + len(record.key or b"") + len(
                record.value or b"") + sum(len(name) + len(value or b"") for name, value in record.headers)
        if topic == TRACKING_ORDER_HISTORY:
            _note_purge(record.key, record.value, replayed.purged)
        chunk += _events_in(topic, record.value)
        if len(chunk) >= CHUNK:
            await record_events(conn, chunk, FRESH)
            replayed.events += len(chunk)
            chunk = []
    if chunk:
        await record_events(conn, chunk, FRESH)
        replayed.events += len(chunk)


def _note_purge(key: bytes | None, value: bytes | None, purged: set[UUID]) -> None:
    with suppress(ValueError, AttributeError):  # a key that is no order id: only tracking writes the topic
        order_id = UUID(key.decode())
        (purged.add if value is None else purged.discard)(order_id)


async def _drop_purged(conn: asyncpg.Connection, order_ids: set[UUID]) -> None:
    await conn.execute(f"""WITH timeline AS (DELETE FROM {FRESH.events} WHERE order_id = ANY($1::uuid[]))
                           DELETE FROM {FRESH.orders} WHERE order_id = ANY($1::uuid[])""", list(order_ids))


def _events_in(topic: str, value: bytes | None) -> list[TimelineEvent]:
    """An order's history; or the event of a timeline topic's record if the live consumer applies it: a valid
    envelope of a type it handles there, with a valid payload (nothing for what it dead-letters)."""
    handled = (OrderHistory,) if topic == TRACKING_ORDER_HISTORY else next(
        s for s in SERVICE.subscriptions if s.topic == topic).handlers
    try:
        envelope = Envelope.model_validate_json(value or b"")
        model: type[Contract] | None = REGISTRY.get(envelope.type)
        if model is None or model not in handled:
            return []
        refuse_nul_characters(model, envelope.data)
        payload = model.model_validate(envelope.data)
    except ValidationError:
        return []
    return events_of(payload) if isinstance(payload, OrderHistory) else [
        timeline_event(payload, envelope.id, envelope.time)]
