"""The customer's tracking page in a real browser (Debian's chromium, headless, driven by Playwright): the link
taken from the email the customer received opens it, without any key, showing the parcel shipped with its
tracking number and the payment taken; an altered link and an expired one are refused with a page that says so;
the link's secret shows in no service's log."""

import asyncio
import base64
import json
import re
import time
import uuid
from email.message import EmailMessage

import pytest

from ops.client import client
from ops.simulators import LocationSimulator
from ops.waiting import eventually
from shared.contracts.orders import Customer, OrderShipped
from shared.contracts.payments import Authorization
from shared.tracking_links import PAGE_PATH, TrackingLinks, tracking_links

from ..support.topics import of_type

pytestmark = pytest.mark.e2e
LINK = re.compile(r"Follow your order: (\S+)")


async def shipped_email(mail_server, address: str) -> EmailMessage:
    async def arrived():
        return next((mail for mail in mail_server.mails
                     if mail["To"] == address and mail["Subject"].endswith("is on its way")), None)

    return await eventually(arrived, what=f"the shipping email to {address}")


async def tracked(driver, order_id, *, payment: str) -> dict:
    """The order's view once tracking has its parcel and the payment service's answer."""
    async def seen():
        raw = await driver.db.fetchval("SELECT view FROM tracking.orders WHERE order_id = $1", order_id)
        view = json.loads(raw) if raw else {}
        return view if view.get("shipments") and view["payment"]["status"] == payment else None

    return await eventually(seen, what=f"order {order_id} shipped and paid in the read model")


async def shipped_by_the_location_simulator(driver, order_id):
    """The location works through this order only, and the carrier has not delivered it yet."""
    async with client(driver.config, "test/location") as location:
        simulator = LocationSimulator(driver.config, location, handles=lambda work: work["order_id"] == str(order_id),
                                      group=driver.unique("page-location"), deliver=False)
        task = asyncio.create_task(simulator.run())
        try:
            [shipped] = await driver.orders.wait_for(of_type(OrderShipped, order_id))
        finally:
            task.cancel()
    return shipped["data"]


def forged(link: str) -> str:
    """The link with another order's id put in, as someone guessing at ids would: the signature is not theirs."""
    base, token = link.split(PAGE_PATH)
    _, timestamp, signature = token.split(".")
    payload = base64.urlsafe_b64encode(json.dumps(str(uuid.uuid4())).encode()).decode().rstrip("=")
    return f"{base}{PAGE_PATH}{payload}.{timestamp}.{signature}"


async def test_the_link_in_the_shipping_email_opens_the_page_in_chromium(driver, mail_server, payments, browser,
                                                                          oms):
    who = Customer(customer_id=driver.unique("C"), email=f"page.{uuid.uuid4().hex[:8]}@example.org",
                   name="Paula Page")
    sku = await driver.stocked_sku(3)
    order = driver.order([(sku, 1)]).model_copy(update={"customer": who})
    total = order.computed_totals().total
    order = order.model_copy(update={"payment": Authorization(provider="psp", reference="auth-page", amount=total)})
    order_id = driver.order_id(order)
    await driver.channel.send(order)
    shipped = await shipped_by_the_location_simulator(driver, order_id)

    mail = await shipped_email(mail_server, who.email)
    [link] = LINK.findall(mail.get_body(("plain",)).get_content())
    assert f'href="{link}"' in mail.get_body(("html",)).get_content(), "the same link in the HTML part"
    assert str(order_id) not in link and who.email not in link
    await tracked(driver, order_id, payment="captured")

    page = await browser.new_page(viewport={"width": 390, "height": 844})  # a phone
    try:
        opened = await page.goto(link)
        assert opened.status == 200
        assert await page.inner_text("#status") == "On its way"
        assert await page.inner_text(".tracking") == shipped["tracking_number"]
        assert shipped["carrier"] in await page.inner_text("#shipments")
        assert order.channel_order_id in await page.inner_text("h1")
        payment = await page.inner_text("#payment")
        assert "Charged" in payment and f"{total:.2f} EUR" in payment
        assert "tracking number" in await page.inner_text("#next")
        assert await page.evaluate("document.documentElement.scrollWidth") <= 390, "no sideways scrolling"

        tampered = await page.goto(forged(link))
        assert tampered.status == 403 and "This link does not work" in await page.inner_text("body")
        links = tracking_links()  # the secret and lifetime the session's services were given
        signed_long_ago = TrackingLinks(links.secret, links.lifetime_seconds, link.split(PAGE_PATH)[0],
                                        clock=lambda: time.time() - links.lifetime_seconds - 60)
        expired = await page.goto(signed_long_ago.url(order_id))
        assert expired.status == 410 and "This link has expired" in await page.inner_text("body")
        assert order.channel_order_id not in await page.content()
    finally:
        await page.close()

    logs = "".join(proc.logfile.read_text(errors="replace") for proc in oms.values())
    assert links.secret not in logs and link.split(PAGE_PATH)[1] not in logs, "a secret or a link in a log"
