"""Tracking's order views on its real tables: an order's new events are applied to its view as it stands, and the
result is always the view of all its events — whether they come in order, one arrives late, or the view was kept
before it knew where it stood."""

import uuid

import pytest

from services.tracking import store
from services.tracking.domain import project

from ..support.schemas import own_copy
from ..unit.test_tracking import events_of, whole_life

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
async def pool(config, admin):
    async with own_copy(config, admin, "tracking", ("events", "orders")) as pool:
        yield pool


async def _record(pool, events) -> set[uuid.UUID]:
    async with pool.acquire() as conn, conn.transaction():
        return await store.record_events(conn, events)


async def _stored(pool, order_id):
    return await pool.fetchrow("SELECT view, progress FROM orders WHERE order_id = $1", order_id)


async def test_events_in_order_each_advance_the_view_as_it_stands(pool):
    order_id = uuid.uuid4()
    events = events_of(whole_life(order_id))
    for arrived, event in enumerate(events, start=1):
        assert await _record(pool, [event]) == {order_id}
        assert (await _stored(pool, order_id))["view"] == project(events[:arrived]).model_dump(mode="json")
    assert (await _stored(pool, order_id))["progress"]["event_id"] == str(events[-1].event_id)


async def test_a_late_event_and_a_view_kept_without_progress_are_projected_from_all_events_again(pool):
    order_id = uuid.uuid4()
    events = events_of(whole_life(order_id))
    late = events[4]
    await _record(pool, [e for e in events[:-1] if e is not late])
    await _record(pool, [late])
    assert (await _stored(pool, order_id))["view"] == project(events[:-1]).model_dump(mode="json")
    await pool.execute("UPDATE orders SET progress = NULL WHERE order_id = $1", order_id)
    await _record(pool, [events[-1]])
    stored = await _stored(pool, order_id)
    assert stored["view"] == project(events).model_dump(mode="json") and stored["progress"] is not None


async def test_events_recorded_again_change_nothing(pool):
    order_id = uuid.uuid4()
    events = events_of(whole_life(order_id))
    await _record(pool, events)
    before = await _stored(pool, order_id)
    assert await _record(pool, events[:3]) == set()
    assert await _stored(pool, order_id) == before
