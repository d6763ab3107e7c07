"""Tracking's order histories on its real tables: a burst of an order's events is published as one history once the
order is quiet (not one whole history per event), and an event committed while a publication runs is not left out."""

import uuid
from contextlib import asynccontextmanager

import pytest
from opentelemetry.context import Context

from ops.waiting import eventually
from services.tracking import handlers
from shared.contracts import Contract, Envelope
from shared.contracts.base import Attributes
from shared.contracts.topics import TRACKING_ORDER_HISTORY
from shared.contracts.tracking import OrderHistory
from shared.messaging.unit_of_work import Message, UnitOfWork

from ..support.schemas import own_copy
from ..unit.test_tracking import story

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
async def pool(config, admin):
    """The tracking runtime role on copies of its tables: the session's tracking service publishes whatever is due
    in its schema."""
    async with own_copy(config, admin, "tracking", ("events", "orders", "history_due", "outbox")) as pool:
        yield pool


@pytest.fixture
def begin(pool, config):
    settings = config.model_copy(update={"history_quiet_seconds": 0.001})

    @asynccontextmanager
    async def begin():
        async with pool.acquire() as conn, conn.transaction():
            uow = UnitOfWork(conn, "tracking", frozenset({TRACKING_ORDER_HISTORY}), settings)
            yield uow
            await uow.flush()

    return begin


def _message(payload: Contract) -> Message:
    return Message(payload, Attributes(type=payload.message_type, source="test", subject=payload.key(),
                                       correlationid="corr-1"), Context())


async def _published(pool, order_id: uuid.UUID) -> list[OrderHistory]:
    rows = await pool.fetch("SELECT value FROM outbox WHERE key = $1 ORDER BY seq", str(order_id))
    return [OrderHistory.model_validate(Envelope.model_validate_json(row["value"]).data) for row in rows]


async def _publish_all(begin) -> int:
    return await eventually(lambda: handlers._publish_due(begin, 500), what="the quiet orders' histories published")


async def test_a_burst_of_events_is_published_as_one_history_once_the_order_is_quiet(pool, begin):
    order_id = uuid.uuid4()
    events = [_message(p) for p in story(order_id)[:3]]
    for event in events:  # three batches, three transactions
        async with begin() as uow:
            await handlers.record_events(uow, [event])
    assert await _published(pool, order_id) == [], "nothing is published while the order's events come in"

    await _publish_all(begin)
    [history] = await _published(pool, order_id)
    assert [e.event_id for e in history.events] == [e.envelope.id for e in events]
    assert await pool.fetchval("SELECT count(*) FROM history_due WHERE order_id = $1", order_id) == 0


async def test_an_event_committed_while_a_publication_runs_is_in_the_next_one(pool, begin):
    order_id = uuid.uuid4()
    first, late = [_message(p) for p in story(order_id)[:2]]
    async with begin() as uow:
        await handlers.record_events(uow, [first])
    async with begin() as adding:
        await handlers.record_events(adding, [late])  # holds the order's mark until it commits
        async with begin() as publishing:
            assert await handlers.store.claim_due_histories(publishing.conn, 0.001, 500) == [], \
                "a publication now would read the events without the one not yet committed"
    await _publish_all(begin)
    [history] = await _published(pool, order_id)
    assert [e.event_id for e in history.events] == [first.envelope.id, late.envelope.id]
