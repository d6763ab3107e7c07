"""Notification's deliveries handed off on real Postgres and a real mail server (aiosmtpd): a delivery recorded by
this process is sent once its transaction commits, without a claim and without waiting for the sender's poll (an
hour here); one the customer opted out of is recorded skipped and never handed; one rolled back is never sent."""

import asyncio
import uuid
from contextlib import asynccontextmanager, nullcontext

import pytest

from ops.waiting import eventually
from services.notification import delivery, handlers
from services.notification.config import notification_settings
from services.notification.domain import delivery_id, notification_id
from services.notification.store import ChannelSettings, NewDelivery, NewNotification, insert_notifications
from shared.contracts.topics import NOTIFICATION_EVENTS
from shared.messaging.unit_of_work import UnitOfWork

from ..support.receivers import MailServer
from ..support.schemas import own_copy

pytestmark = pytest.mark.integration
WEB = ChannelSettings.default("web")


@pytest.fixture(scope="module")
async def pool(config, admin):
    tables = ("notifications", "deliveries", "customer_preferences", "bounces", "outbox")
    async with own_copy(config, admin, "notification", tables) as pool:
        yield pool


@pytest.fixture
def begin(pool, config):
    @asynccontextmanager
    async def begin():
        async with pool.acquire() as conn:
            async with conn.transaction():
                uow = UnitOfWork(conn, "notification", frozenset({NOTIFICATION_EVENTS}), config)
                yield uow
                await uow.flush()
            uow.committed()

    return begin


@pytest.fixture
async def sender(begin):
    """The sender of this process, against a mail server of its own, looking for due deliveries once an hour."""
    server = await MailServer().start()
    config = notification_settings().model_copy(update={"smtp_port": server.port, "notification_poll_seconds": 3600})
    task = asyncio.create_task(delivery.send_due(begin, config))
    yield server
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    await server.stop()


async def _record(begin, address: str, *, fail: bool = False) -> uuid.UUID:
    order = uuid.uuid4()
    message = notification_id(order, "order_confirmed")
    mail = NewDelivery(delivery_id(message, "email"), message, order, "order_confirmed", "web", "email", address,
                       [address.lower()], "Your order", "Thank you", None, None, "corr", {})
    with pytest.raises(RuntimeError) if fail else nullcontext():
        async with begin() as uow:
            await insert_notifications(uow.conn, [NewNotification(message, order, "order_confirmed", "", address,
                                                                  "Your order", "Thank you", uuid.uuid4())])
            await handlers._record_deliveries(uow, [mail], {"web": WEB})
            if fail:
                raise RuntimeError("the transaction rolls back")
    return mail.delivery_id


async def test_a_recorded_delivery_is_sent_once_committed_without_a_claim(pool, begin, sender):
    await asyncio.sleep(0.2)  # the sender's first claim (nothing due) is behind it: the next is an hour away
    address = f"handed.{uuid.uuid4().hex[:8]}@example.org"
    sent = await _record(begin, address)
    await eventually(lambda: [m for m in sender.mails if m["To"] == address], timeout=10,
                     what="the mail sent without waiting for the sender's poll")
    row = await eventually(lambda: pool.fetchrow("SELECT * FROM deliveries WHERE delivery_id = $1 AND status = 'sent'",
                                                 sent), what="the delivery recorded sent")
    assert row["attempts"] == 1, "its first attempt, counted when it was recorded"


async def test_an_opted_out_delivery_is_recorded_skipped_and_a_rolled_back_one_is_never_sent(pool, begin, sender):
    quiet = f"quiet.{uuid.uuid4().hex[:8]}@example.org"
    await pool.execute("INSERT INTO customer_preferences (customer, email, webhook) VALUES ($1, false, true)", quiet)
    skipped = await _record(begin, quiet)
    row = await pool.fetchrow("SELECT * FROM deliveries WHERE delivery_id = $1", skipped)
    assert (row["status"], row["skip_reason"], row["attempts"]) == ("skipped", "OPTED_OUT", 0)

    undone = f"undone.{uuid.uuid4().hex[:8]}@example.org"
    await _record(begin, undone, fail=True)
    after = f"after.{uuid.uuid4().hex[:8]}@example.org"
    await _record(begin, after)
    await eventually(lambda: [m for m in sender.mails if m["To"] == after], timeout=10, what="the next mail sent")
    assert not [m for m in sender.mails if m["To"] in (quiet, undone)]

