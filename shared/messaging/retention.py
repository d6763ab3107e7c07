"""Inbox retention: message keys older than the window are deleted, in small chunks, once an hour. And how a
service hears of orders past their retention (`order_purges`), which it then deletes its records of.

Safe because the window is longer than the topics' retention (checked at start-up, settings.py): a message can
only be delivered again while its topic still holds it, so a key older than the topic's retention can never be
needed to recognise a redelivery. Replays of dead letters carry ids of their own (ops/deadletters.py).
"""

import asyncio
from uuid import UUID

from shared.contracts.orders import OrderPurged
from shared.contracts.topics import ORDER_PURGES
from shared.logging import get_logger
from shared.settings import settings

from .consumer import READ_SIDE_WAIT_MS, Subscription
from .retry import run_forever
from .unit_of_work import Begin, Handler, Message

log = get_logger(__name__)

CHUNK = 5000
INTERVAL_SECONDS = 3600


async def prune_inbox(begin: Begin) -> None:
    async def hourly() -> None:
        while True:
            await prune_once(begin, settings().inbox_retention_days)
            await asyncio.sleep(INTERVAL_SECONDS)

    await run_forever("inbox-retention", hourly)


async def prune_once(begin: Begin, retention_days: float) -> int:
    """Delete keys older than the window, a chunk per transaction so that no lock is held for long."""
    pruned = 0
    while True:
        async with begin() as uow:
            deleted = await uow.conn.fetchval(
                """WITH old AS (SELECT message_key FROM inbox
                                WHERE received_at < now() - make_interval(secs => $1) LIMIT $2),
                        gone AS (DELETE FROM inbox WHERE message_key IN (SELECT message_key FROM old) RETURNING 1)
                   SELECT count(*) FROM gone""", retention_days * 86400, CHUNK)
        pruned += deleted
        if deleted < CHUNK:
            if pruned:
                log.info("inbox.pruned", keys=pruned, retention_days=retention_days)
            return pruned


def order_purges(forget: Handler) -> Subscription:
    """The subscription by which a service forgets orders capture purged (services/capture/retention.py): `forget`
    deletes the service's records of the batch's orders. Read a second behind, as the read side is: purges come
    an hour apart, and an idle consumer that waits longer per fetch costs less."""
    return Subscription(topic=ORDER_PURGES, handlers={OrderPurged: forget}, batch_wait_ms=READ_SIDE_WAIT_MS)


def purged_order_ids(batch: list[Message[OrderPurged]]) -> list[UUID]:
    return [message.payload.order_id for message in batch]
