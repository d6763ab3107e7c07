"""Notification's deliveries handed off on real Postgres and a real mail server (aiosmtpd): a delivery recorded by
this process is sent once its transaction commits, without a claim and without waiting for the sender's poll (an
hour here); one the customer opted out of is recorded skipped and never handed; one rolled back is never sent; a
sender that stops leaves what it held unsent due at once, not when its lease runs out."""

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
    tables = ("notifications", "deliveries", "customer_preferences", "bounces", "channel_settings", "outbox")
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
    [recorded] = await _record_many(begin, [address], fail=fail)
    return recorded


async def _record_many(begin, addresses: list[str], *, fail: bool = False) -> list[uuid.UUID]:
    """One confirmation mail to each address, recorded in one transaction."""
    notifications, mails = [], []
    for address in addresses:
        order = uuid.uuid4()
        message = notification_id(order, "order_confirmed")
        notifications.append(NewNotification(message, order, "order_confirmed", "", address, "Your order",
                                             "Thank you", uuid.uuid4()))
        mails.append(NewDelivery(delivery_id(message, "email"), message, order, "order_confirmed", "web", "email",
                                 address, [address.lower()], "Your order", "Thank you", None, None, "corr", {}))
    with pytest.raises(RuntimeError) if fail else nullcontext():
        async with begin() as uow:
            await insert_notifications(uow.conn, notifications)
            await handlers._record_deliveries(uow, mails, {"web": WEB})
            if fail:
                raise RuntimeError("the transaction rolls back")
    return [mail.delivery_id for mail in mails]


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



async def test_a_stopping_sender_leaves_what_it_held_unsent_due_at_once(pool, begin):
    """Twenty-five deliveries handed to a sender whose mail server never answers: twenty are cut short mid-send,
    five wait their turn. Stopped, the sender makes all of them due again at once, instead of in the lease's 50 s;
    a sender started next sends every one."""
    silent = await asyncio.start_server(lambda reader, writer: reader.read(), "127.0.0.1", 0)  # never greets
    port = silent.sockets[0].getsockname()[1]
    config = notification_settings().model_copy(update={"smtp_port": port, "notification_poll_seconds": 3600})
    stopping = asyncio.create_task(delivery.send_due(begin, config))
    await asyncio.sleep(0.2)  # its first claim (nothing due) is behind it
    addresses = [f"held.{i}.{uuid.uuid4().hex[:8]}@example.org" for i in range(delivery.IN_FLIGHT + 5)]
    held = await _record_many(begin, addresses)
    await eventually(lambda: silent.sockets and len(delivery.HANDED.waiting) == 5, what="twenty in flight")
    stopping.cancel()
    await asyncio.gather(stopping, return_exceptions=True)
    silent.close()
    due = await pool.fetchval("SELECT count(*) FROM deliveries WHERE delivery_id = ANY($1) AND status = 'pending' "
                              "AND next_attempt_at <= now()", held)
    assert due == len(held), "every delivery it held, due at once"

    server = await MailServer().start()
    config = config.model_copy(update={"smtp_port": server.port})
    next_sender = asyncio.create_task(delivery.send_due(begin, config))
    try:
        await eventually(lambda: {m["To"] for m in server.mails} >= set(addresses), timeout=15,
                         what="every mail sent by the next sender")
    finally:
        next_sender.cancel()
        await asyncio.gather(next_sender, return_exceptions=True)
        await server.stop()
