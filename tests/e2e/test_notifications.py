"""Customer messages delivered for real: a real SMTP server and a real webhook receiver (tests/support/receivers.py)
read what arrived — one email and one signed webhook per event, opt-outs and bounces honoured, a failing receiver
retried and then given up, and kill -9 between sending and recording ending with every message delivered and at
most the documented duplicate, known by its id."""

import base64
import json
import os
import secrets
import uuid

import pytest
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from ops.waiting import eventually
from services.notification.delivery import message_id
from services.notification.domain import delivery_id
from shared.contracts.fulfillment import FulfillmentRequested, LocationUpdate
from shared.contracts.notification import (
    ConfigureChannel,
    NotificationDelivered,
    NotificationFailed,
    RecordBounce,
    SetCustomerPreference,
)
from shared.contracts.orders import Customer, OrderConfirmed
from shared.contracts.topics import ORDER_EVENTS

from ..support.receivers import Hold
from ..support.services import wait_started
from ..support.topics import TopicWatcher, of_type

pytestmark = pytest.mark.e2e
FROM = "orders@shop.example"


def new_secret() -> str:
    return "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()


async def configure(driver, webhooks, *, email: bool = True, status: int = 200,
                    locale: str = "en") -> tuple[str, str, str]:
    """A sales channel of its own with a webhook endpoint answering `status`: (channel, path, secret)."""
    channel = f"n{uuid.uuid4().hex[:8]}"
    path, secret = f"/hooks/{channel}", new_secret()
    webhooks.status[path] = status
    await driver.channel.send(ConfigureChannel(channel=channel, email=email, from_address=FROM, locale=locale,
                                               webhook_url=webhooks.url(path), webhook_secret=secret))
    await eventually(lambda: driver.count("SELECT count(*) FROM notification.channel_settings WHERE channel = $1",
                                          channel), what=f"channel {channel} configured")
    return channel, path, secret


def customer(label: str) -> Customer:
    marker = uuid.uuid4().hex[:8]
    return Customer(customer_id=f"C-{marker}", email=f"{label}.{marker}@example.org", name=f"{label} {marker}")


async def place(driver, channel: str, who: Customer, units: int = 1):
    sku = await driver.stocked_sku(units)
    order = driver.order([(sku, 1)], channel=channel).model_copy(update={"customer": who})
    await driver.channel.send(order)
    return driver.order_id(order)


async def notifications(driver, order_id, count: int) -> dict[str, uuid.UUID]:
    """kind -> notification id, once the order has `count` customer messages."""
    async def recorded():
        rows = await driver.db.fetch("SELECT kind, notification_id FROM notification.notifications "
                                     "WHERE order_id = $1", order_id)
        return {r["kind"]: r["notification_id"] for r in rows} if len(rows) >= count else None

    return await eventually(recorded, what=f"{count} customer messages for {order_id}")


async def ship(driver, order_id, tracking: str) -> None:
    [work] = await driver.work.wait_for(of_type(FulfillmentRequested, order_id))
    await driver.channel.send(LocationUpdate(fulfillment_order_id=work["data"]["fulfillment_order_id"],
                                             order_id=order_id, status="shipped", carrier="DHL",
                                             tracking_number=tracking))


async def settled(driver, order_id, count: int) -> list:
    """The order's deliveries, once `count` of them are no longer pending."""
    async def done():
        rows = await driver.db.fetch("SELECT * FROM notification.deliveries "
                                     "WHERE order_id = $1 AND status <> 'pending'", order_id)
        return rows if len(rows) >= count else None

    return await eventually(done, what=f"{count} deliveries of {order_id} to settle")


async def test_one_email_and_one_signed_webhook_per_event(driver, mail_server, webhooks):
    channel, path, secret = await configure(driver, webhooks)
    who = customer("Pia")
    async with TopicWatcher(driver.config, NotificationDelivered.topic) as outcomes:
        order_id = await place(driver, channel, who)
        await ship(driver, order_id, "TRK-N1")
        messages = await notifications(driver, order_id, 2)
        assert set(messages) == {"order_confirmed", "order_shipped"}
        deliveries = await settled(driver, order_id, 4)
        await outcomes.wait_for(of_type(NotificationDelivered, order_id), count=4)

    assert {(d["channel"], d["status"], d["attempts"]) for d in deliveries} == {("email", "sent", 1),
                                                                                 ("webhook", "sent", 1)}
    for kind, notification in messages.items():
        [mail] = mail_server.with_id(message_id(delivery_id(notification, "email"), FROM))
        assert mail["To"] == who.email and mail["From"] == FROM
        assert mail.get_body(("html",)) is not None, "a text and an HTML part"
        webhook_id = str(delivery_id(notification, "webhook"))
        [request] = [r for r in webhooks.to(path) if r.headers["webhook-id"] == webhook_id]
        payload = Webhook(secret).verify(request.body, request.headers)
        assert (payload["type"], payload["data"]["order_id"]) == (kind.replace("_", ".", 1), str(order_id))
        assert payload["data"]["tracking_url"].startswith(f"{os.environ['OMS_TRACKING_PAGE_URL']}/track/")
        assert who.email not in request.body.decode() and who.name not in request.body.decode()
    shipped = mail_server.with_id(message_id(delivery_id(messages["order_shipped"], "email"), FROM))[0]
    assert "TRK-N1" in shipped.get_body(("plain",)).get_content()
    with pytest.raises(WebhookVerificationError):
        Webhook(new_secret()).verify(request.body, request.headers)


async def test_a_german_channels_customers_are_written_to_in_german(driver, mail_server, webhooks):
    channel, _, _ = await configure(driver, webhooks, locale="de")
    order_id = await place(driver, channel, customer("Jonas"))
    messages = await notifications(driver, order_id, 1)
    await settled(driver, order_id, 2)
    [mail] = mail_server.with_id(message_id(delivery_id(messages["order_confirmed"], "email"), FROM))
    assert mail["Subject"].startswith("Ihre Bestellung") and mail["Subject"].endswith("ist bestätigt")
    assert mail.get_body(("plain",)).get_content().startswith("Hallo Jonas")


async def test_a_redelivered_or_repeated_event_sends_nothing_again(driver, mail_server, webhooks):
    channel, path, _ = await configure(driver, webhooks)
    who = customer("Once")
    order_id = await place(driver, channel, who)
    [confirmed] = await driver.orders.wait_for(of_type(OrderConfirmed, order_id))
    await settled(driver, order_id, 2)
    again = json.dumps(confirmed).encode()
    repeated = json.dumps({**confirmed, "id": str(uuid.uuid4())}).encode()
    for value in (again, repeated):  # the same message redelivered; the event published twice
        await driver.channel.send_raw(ORDER_EVENTS, value, str(order_id))
    await ship(driver, order_id, "TRK-ONCE")  # after them on the order's partition: handled once they are
    await settled(driver, order_id, 4)
    assert len([m for m in mail_server.mails if m["To"] == who.email]) == 2, "confirmed and shipped, once each"
    assert len(webhooks.to(path)) == 2


async def test_opted_out_and_bounced_customers_are_not_mailed(driver, mail_server, webhooks):
    channel, path, _ = await configure(driver, webhooks)
    quiet, bouncing = customer("Quiet"), customer("Bouncing")
    await driver.channel.send(SetCustomerPreference(customer=quiet.email.upper(), email=False))
    await driver.channel.send(RecordBounce(address=bouncing.email, detail="550 mailbox unknown"))
    await eventually(lambda: driver.count(
        "SELECT EXISTS (SELECT 1 FROM notification.customer_preferences WHERE customer = lower($1)) "
        "AND EXISTS (SELECT 1 FROM notification.bounces WHERE address = lower($2))", quiet.email, bouncing.email),
        what="the opt-out and the bounce recorded")

    for who, reason in ((quiet, "OPTED_OUT"), (bouncing, "BOUNCED")):
        order_id = await place(driver, channel, who)
        deliveries = {d["channel"]: d for d in await settled(driver, order_id, 2)}
        assert (deliveries["email"]["status"], deliveries["email"]["skip_reason"]) == ("skipped", reason)
        assert deliveries["webhook"]["status"] == "sent", "the channel is still told"
        assert not [m for m in mail_server.mails if m["To"] == who.email]

    await driver.channel.send(SetCustomerPreference(customer=quiet.customer_id, email=True, webhook=False))
    await eventually(lambda: driver.count("SELECT count(*) FROM notification.customer_preferences "
                                          "WHERE customer = lower($1)", quiet.customer_id), what="the opt-out by id")
    order_id = await place(driver, channel, quiet)
    deliveries = {d["channel"]: d for d in await settled(driver, order_id, 2)}
    assert deliveries["webhook"]["skip_reason"] == "OPTED_OUT"
    assert deliveries["email"]["skip_reason"] == "OPTED_OUT", "the earlier opt-out by address still holds"


async def test_a_failing_receiver_is_retried_then_given_up_with_the_reason(driver, webhooks):
    channel, path, _ = await configure(driver, webhooks, email=False, status=500)
    async with TopicWatcher(driver.config, NotificationFailed.topic) as outcomes:
        order_id = await place(driver, channel, customer("Failing"))
        [failed] = await outcomes.wait_for(of_type(NotificationFailed, order_id))
    [delivery] = await settled(driver, order_id, 1)
    assert (delivery["status"], delivery["attempts"], delivery["last_error"]) == ("failed", 3, "HTTP 500")
    assert failed["data"]["reason"] == {"code": "DELIVERY_FAILED", "detail": "HTTP 500"}
    assert failed["data"]["attempts"] == 3
    attempts = webhooks.to(path)
    assert len(attempts) == 3 and {r.headers["webhook-id"] for r in attempts} == {str(delivery["delivery_id"])}


async def test_kill_between_sending_and_recording_delivers_each_message_with_at_most_a_duplicate_of_the_same_id(
        driver, oms, mail_server, webhooks):
    channel, path, secret = await configure(driver, webhooks)
    who = customer("Kill")
    mail_hold = Hold(lambda mail: mail["To"] == who.email)
    hook_hold = Hold(lambda request: request.path == path)
    mail_server.holds.append(mail_hold)
    webhooks.holds.append(hook_hold)
    notification = oms["notification"]
    starts = notification.logfile.read_text(errors="replace").count('"service.started"')
    try:
        order_id = await place(driver, channel, who)
        await eventually(lambda: mail_hold.held.is_set() and hook_hold.held.is_set(),
                         what="both deliveries received, not yet answered")
        notification.kill()
    finally:
        mail_hold.release.set()
        hook_hold.release.set()
    notification.start(dict(os.environ))
    await wait_started(notification, runs=starts + 1)

    deliveries = await settled(driver, order_id, 2)
    assert {(d["channel"], d["status"]) for d in deliveries} == {("email", "sent"), ("webhook", "sent")}
    [confirmed] = (await notifications(driver, order_id, 1)).values()
    mails = mail_server.with_id(message_id(delivery_id(confirmed, "email"), FROM))
    hooks = [r for r in webhooks.to(path) if r.headers["webhook-id"] == str(delivery_id(confirmed, "webhook"))]
    assert len(mails) == 2 and len(hooks) == 2, "sent before the crash and again after: the same id twice"
    assert len([m for m in mail_server.mails if m["To"] == who.email]) == 2, "no mail under another id"
    assert len(webhooks.to(path)) == 2
    for request in hooks:
        Webhook(secret).verify(request.body, request.headers)
