"""The notification sender's store on real Postgres: two senders never claim the same delivery, sent deliveries are
recorded together (each by its own attempt), and bodies are cleared once their retention has passed, leaving the
record of who was told what, when."""

import uuid

import pytest

from services.notification import store
from services.notification.domain import delivery_id, notification_id
from services.notification.store import NewDelivery, NewNotification

from ..support.schemas import own_copy

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
async def pool(config, admin):
    """The notification runtime role on copies of the store's tables: the session's notification service (running
    for the end-to-end tests) sends whatever is due in its schema."""
    async with own_copy(config, admin, "notification", ("notifications", "deliveries")) as pool:
        yield pool


async def _message(conn, *, channels=("email", "webhook")) -> list[uuid.UUID]:
    order = uuid.uuid4()
    message = notification_id(order, "order_confirmed")
    await store.insert_notifications(conn, [NewNotification(message, order, "order_confirmed", "", "a@example.org",
                                                            "Subject", "Body", uuid.uuid4())])
    deliveries = [NewDelivery(delivery_id(message, channel), message, order, "order_confirmed", "web", channel,
                              "a@example.org", ["a@example.org"], "Subject", "Body", "<p>Body</p>",
                              {"type": "order.confirmed"} if channel == "webhook" else None, "corr", {})
                  for channel in channels]
    await store.insert_deliveries(conn, deliveries, skipped={}, lease_seconds=0)  # due at once: its first attempt
    return [d.delivery_id for d in deliveries]


async def test_two_senders_claim_disjoint_deliveries(pool):
    async with pool.acquire() as conn:
        ids = set(await _message(conn)) | set(await _message(conn))
    async with pool.acquire() as first, pool.acquire() as second, first.transaction(), second.transaction():
        mine = {r["delivery_id"] for r in await store.due_deliveries(first, 1000)}
        theirs = {r["delivery_id"] for r in await store.due_deliveries(second, 1000)}
        assert ids <= mine and not ids & theirs, "rows one sender holds are skipped by the other"


async def test_bodies_are_cleared_after_retention_and_the_record_stays(pool):
    async with pool.acquire() as conn:
        old_sent, old_pending = await _message(conn)
        await conn.execute("UPDATE deliveries SET status = 'sent', finished_at = now() - interval '31 days' "
                           "WHERE delivery_id = $1", old_sent)
        [recent] = await _message(conn, channels=("email",))
        await conn.execute("UPDATE deliveries SET status = 'sent', finished_at = now() - interval '1 day' "
                           "WHERE delivery_id = $1", recent)
        assert await store.clear_bodies(conn, 30) >= 1
        rows = {r["delivery_id"]: r for r in await conn.fetch(
            "SELECT * FROM deliveries WHERE delivery_id = ANY($1)", [old_sent, old_pending, recent])}
        cleared = rows[old_sent]
        assert (cleared["body_text"], cleared["subject"], cleared["status"]) == (None, None, "sent")
        assert rows[old_sent]["body_cleared_at"] is not None
        assert rows[old_pending]["body_text"] == "Body", "a delivery still to be sent keeps what it will say"
        assert rows[recent]["body_text"] == "Body"


async def test_sent_deliveries_are_recorded_together_each_by_the_attempt_that_sent_it(pool):
    async with pool.acquire() as conn:
        email, webhook = await _message(conn)
        [taken_since] = await _message(conn, channels=("email",))
        await store.lease(conn, {email: 30, webhook: 30, taken_since: 30})  # claimed again: a second attempt
        await store.lease(conn, {taken_since: 30})  # its lease ran out and another sender counted a third attempt
        recorded = await store.record_sent(conn, {email: 2, webhook: 2, taken_since: 2})
        assert recorded == {email, webhook}, "an attempt whose lease another sender has taken since records nothing"
        statuses = dict(await conn.fetch("SELECT delivery_id, status FROM deliveries WHERE delivery_id = ANY($1)",
                                         [email, webhook, taken_since]))
        assert statuses == {email: "sent", webhook: "sent", taken_since: "pending"}
