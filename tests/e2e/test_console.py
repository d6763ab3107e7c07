"""The ops console in a real browser (Debian's chromium, headless, driven by Playwright) against an OMS of this
test's own with the console process beside it, reached as an operator reaches it: through the tracking service's
/ops. Login is required (a wrong password and a channel's API key get nowhere); an order placed and delivered
shows every step on its timeline; a location's report about a fulfilment order that does not exist yet is a dead
letter with its reason, and once the order is placed its replay applies it once however often it is clicked; a
payload with a script in it is shown as text; a second instance of a service shows beside the first, each with
its partitions, and goes once stopped; a service killed with kill -9 shows as not ready, its instance gone from
its groups and its consumer lag growing. Every page is screenshotted into test-artifacts/console/."""

import asyncio
import json
import subprocess
import uuid

import asyncpg
import pytest

from ops.client import client
from ops.demo import sample_order
from ops.env import ROOT
from ops.principals import register_locations
from ops.processes import ServiceProcess, free_port
from ops.waiting import eventually
from shared.contracts.fulfillment import LocationUpdate, fulfillment_order_id
from shared.contracts.inventory import ReceiveStock
from shared.contracts.order_rules import order_id_for
from shared.contracts.orders import PlaceOrder
from shared.contracts.routing import RegisterLocation
from shared.contracts.topics import FULFILLMENT_LOCATION_UPDATES
from shared.settings import CONSOLE

from ..support.services import wait_started
from ..support.stack import stack
from .conftest import FRANKFURT

pytestmark = pytest.mark.e2e
PASSWORD = "a-console-password-for-this-test"
TRACE_URL = "http://127.0.0.1:16686/trace/{trace_id}"
ARTIFACTS = ROOT / "test-artifacts" / "console"


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8].upper()}"


@pytest.fixture
async def oms(config, tmp_path):
    """The six services and the console; tracking forwards /ops to the console's port."""
    console_port = free_port()
    env = {"OMS_CONSOLE_URL": f"http://127.0.0.1:{console_port}", "OMS_CONSOLE_SAMPLE_SECONDS": "1",
           "OMS_CONSOLE_PASSWORD": PASSWORD, "OMS_CONSOLE_TRACE_URL": TRACE_URL}
    async with stack(config, tmp_path, env=env) as running:
        console = ServiceProcess(CONSOLE, tmp_path, http_port=console_port)
        running.procs[CONSOLE] = console
        console.start(running.env)
        await wait_started(console)
        db = await asyncpg.create_pool(running.settings.admin_dsn(), min_size=1, max_size=2)
        try:
            yield running, db
        finally:
            await db.close()


async def screenshot(page, name: str, *, full_page: bool = True) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    await page.screenshot(path=str(path), full_page=full_page)
    print(f"screenshot: {path}")


async def stocked_location(ops, db, sku: str) -> str:
    location = unique("WH")
    await register_locations(ops, [RegisterLocation(location_id=location, name=location, kind="warehouse",
                                                    coordinates=FRANKFURT)])
    await eventually(lambda: db.fetchval("SELECT 1 FROM routing.locations WHERE location_id = $1", location),
                     what=f"location {location}")
    await ops.send(ReceiveStock(receipt_id=unique("R"), sku=sku, location_id=location, quantity=20))
    await eventually(lambda: db.fetchval("SELECT 1 FROM inventory.location_stock WHERE sku = $1", sku),
                     what=f"stock of {sku}")
    return location


async def status(db, order_id, *expected: str) -> str:
    async def current():
        found = await db.fetchval("SELECT status FROM capture.orders WHERE order_id = $1", order_id)
        return found if found in expected else None

    return await eventually(current, timeout=60, what=f"order {order_id} {expected}")


def curl(url: str, *args: str) -> str:
    return subprocess.run(["curl", "-s", "-o", "/dev/null", "-w", "%{http_code} %{redirect_url}", *args, url],
                          capture_output=True, text=True, check=True).stdout


async def test_the_console_in_chromium(oms, browser):
    running, db = oms
    base = running.procs["tracking"].url()
    assert curl(f"{base}/ops").startswith("303 ") and "/ops/login" in curl(f"{base}/ops"), "login first"
    assert "/ops/login" in curl(f"{base}/ops/dead-letters", "-H", "Authorization: Bearer any-channel-key")

    page = await browser.new_page(viewport={"width": 1400, "height": 900})
    dialogs = []
    page.on("dialog", lambda dialog: (dialogs.append(dialog.message), asyncio.ensure_future(dialog.dismiss())))
    try:
        await log_in(page, base)
        await screenshot(page, "topics")
        async with client(running.settings, "ops/test") as ops:
            sku = unique("SKU")
            location = await stocked_location(ops, db, sku)
            await an_order_and_its_timeline(page, base, ops, db, sku)
            waiting = await dead_letter_replayed_once(page, base, ops, db, sku, location)
            await a_script_shown_as_text(page, base, ops, dialogs)
            await stuck_orders(page, base, waiting)
            await two_instances_then_one(page, base, running)
            await a_killed_service(page, base, running, ops, db, sku)
    finally:
        await page.close()


async def log_in(page, base: str) -> None:
    await page.goto(f"{base}/ops")
    assert "/ops/login" in page.url
    await page.fill("input[name=operator]", "Olga Operator")
    await page.fill("input[name=password]", "not-the-password")
    await page.click("button:text('Log in')")
    assert await page.inner_text("#login-error") == "Wrong password."
    await screenshot(page, "login")
    assert not [c for c in await page.context.cookies() if c["name"] == "oms_console"]
    await page.fill("input[name=operator]", "Olga Operator")
    await page.fill("input[name=password]", PASSWORD)
    await page.click("button:text('Log in')")
    assert page.url.endswith("/ops/topics")
    [cookie] = [c for c in await page.context.cookies() if c["name"] == "oms_console"]
    assert cookie["httpOnly"] and cookie["sameSite"] == "Strict"
    await page.wait_for_selector("#services tr[data-service=capture]")
    await page.wait_for_selector("#live-state:text-is('live')")  # the server-sent events arrive


async def an_order_and_its_timeline(page, base, ops, db, sku) -> None:
    order = sample_order(unique("W"), lines=[(sku, 1)])
    order_id = order_id_for(order.channel, order.channel_order_id)
    await ops.send(order)
    await status(db, order_id, "confirmed")
    fulfilment = await db.fetchval("SELECT fulfillment_order_id FROM fulfillment.fulfillment_orders "
                                   "WHERE order_id = $1", order_id)
    ids = {"fulfillment_order_id": fulfilment, "order_id": order_id}
    for step in ("picked", "packed"):
        await ops.send(LocationUpdate(**ids, status=step))
    await ops.send(LocationUpdate(**ids, status="shipped", carrier="DHL", tracking_number=unique("TRK")))
    await ops.send(LocationUpdate(**ids, status="delivered"))
    await status(db, order_id, "delivered")

    async def every_event_in_the_view():
        events = await db.fetch("SELECT type FROM tracking.events WHERE order_id = $1", order_id)
        types = {row["type"] for row in events}
        return types if {"OrderDelivered", "DeliveryConfirmed", "CustomerNotified"} <= types else None

    types = await eventually(every_event_in_the_view, what="the delivery and a mail in the read model")
    saga_steps = await db.fetchval("SELECT count(*) FROM capture.order_timeline WHERE order_id = $1", order_id)

    await page.goto(f"{base}/ops/orders")
    await page.fill("input[name=q]", order.channel_order_id)
    await page.click("button:text('Search')")
    assert page.url.endswith(f"/ops/orders/{order_id}")
    assert await page.inner_text("#status") == "delivered"
    shown = set(await page.locator("#timeline td.type").all_inner_texts())
    assert types <= shown and {"OrderAccepted", "OrderConfirmed", "FulfillmentOrderCreated", "ShipmentConfirmed",
                               "OrderShipped", "OrderDelivered", "CustomerNotified"} <= shown
    assert await page.locator("#saga-timeline td.type").count() == saga_steps
    trace = await db.fetchval("SELECT trace_context->>'traceparent' FROM capture.order_sagas WHERE order_id = $1",
                              order_id)
    assert await page.inner_text("#trace-id") == trace.split("-")[1]
    assert await page.get_attribute("#trace-id", "href") == TRACE_URL.format(trace_id=trace.split("-")[1])
    assert "DHL" in await page.inner_text("#shipments")
    await screenshot(page, "order")

    await page.goto(f"{base}/ops/orders?q={order_id}")
    assert page.url.endswith(f"/ops/orders/{order_id}"), "found by order id"


async def dead_letter_replayed_once(page, base, ops, db, sku, location) -> PlaceOrder:
    """A location reports on a fulfilment order before it exists: dead-lettered; once the order is placed (its
    fulfilment order id is derived from order and location), a replay applies the report, once."""
    order = sample_order(unique("W"), lines=[(sku, 1)])
    order_id = order_id_for(order.channel, order.channel_order_id)
    fulfilment = fulfillment_order_id(order_id, location)
    await ops.send(LocationUpdate(fulfillment_order_id=fulfilment, order_id=order_id, status="picked"))
    letter = f"#letters tr.letter:has(div.detail:text('{fulfilment}'))"

    async def listed():
        await page.goto(f"{base}/ops/dead-letters")
        return await page.locator(letter).count() == 1

    await eventually(listed, timeout=30, interval=0.5, what="the dead letter on the page")
    assert await page.locator(f"{letter} td.reason").inner_text() == "UNKNOWN_FULFILLMENT_ORDER"
    await page.select_option("select[name=reason]", "UNKNOWN_FULFILLMENT_ORDER")
    await page.click("#filter button")
    assert await page.locator("#letters tr.letter").count() >= 1
    await screenshot(page, "dead-letters")

    await ops.send(order)  # the cause fixed: the fulfilment order now exists
    await status(db, order_id, "confirmed")
    await page.click(f"{letter} button.replay")
    assert (await page.inner_text("#result")).split(": ", 1)[1].startswith("replayed as ")
    await page.click(f"{letter} button.replay")
    assert "already replayed by Olga Operator" in await page.inner_text("#result")
    assert "nothing sent" in await page.inner_text("#result")

    await eventually(lambda: db.fetchval("SELECT status = 'picked' FROM fulfillment.fulfillment_orders "
                                         "WHERE fulfillment_order_id = $1", fulfilment),
                     what="the replayed report applied")
    picked = await eventually(lambda: db.fetchval(
        "SELECT count(*) FROM tracking.events WHERE order_id = $1 AND type LIKE '%FulfillmentOrderProgressed%' "
        "AND data->>'status' = 'picked'", order_id), what="the picked event in the read model")
    assert picked == 1
    audit = await page.locator("#audit tr").all_inner_texts()
    assert sum("replay" in row and "Olga Operator" in row for row in audit) == 2
    await page.click(f"{letter} button.resolve")
    assert await page.locator(letter).count() == 0, "resolved letters are hidden"
    return order


async def a_script_shown_as_text(page, base, ops, dialogs) -> None:
    marker = uuid.uuid4().hex
    hostile = json.dumps({"note": f"<script>alert('{marker}')</script><img src=x onerror=alert(1)>"}).encode()
    await ops.send_raw(FULFILLMENT_LOCATION_UPDATES, hostile, marker)
    letter = f"#letters tr.letter:has(pre.payload:text('{marker}'))"

    async def listed():
        await page.goto(f"{base}/ops/dead-letters")
        return await page.locator(letter).count() == 1

    await eventually(listed, timeout=30, interval=0.5, what="the hostile dead letter on the page")
    await page.click(f"{letter} summary")
    assert f"<script>alert('{marker}')</script>" in await page.locator(f"{letter} pre.payload").inner_text()
    assert await page.locator("#letters script, #letters img").count() == 0
    assert dialogs == [], "a script in a payload ran"
    await screenshot(page, "dead-letter-script")


async def stuck_orders(page, base, waiting: PlaceOrder) -> None:
    """The order left picked at its location is open: listed with its step, linked to its page."""
    await page.goto(f"{base}/ops/stuck?older_than=0")
    assert await page.locator("#steps tr").count() >= 2
    link = page.locator(f"#stuck a:text('{waiting.channel_order_id}')")
    assert await link.get_attribute("href") == f"/ops/orders/{order_id_for(waiting.channel, waiting.channel_order_id)}"
    await screenshot(page, "stuck")

    await page.goto(f"{base}/ops/orders?q={waiting.customer.customer_id}")
    assert await page.locator("#found tr").count() >= 3, "the customer's orders listed (a header and two)"
    assert await page.locator(f"#found a:text('{waiting.channel_order_id}')").get_attribute("href") == \
        f"/ops/orders/{order_id_for(waiting.channel, waiting.channel_order_id)}", "found by customer"
    await screenshot(page, "search")


NOTIFICATION_GROUP = "#instances tr[data-service=notification][data-group$='oms.notification.orders.events.v1']"


async def two_instances_then_one(page, base, running) -> None:
    """A second notification joins its groups: both instances listed, the group's partitions split between
    them; stopped, it goes (once its session times out) and the first owns them all."""
    await running.start("notification", instance=2)
    await page.goto(f"{base}/ops/topics")
    for instance in ("1", "2"):
        await page.wait_for_selector(f"{NOTIFICATION_GROUP}[data-instance='{instance}'][data-state=Stable]",
                                     timeout=60_000)
    owned = [await page.locator(f"{NOTIFICATION_GROUP}[data-instance='{n}'] td.partitions span").count()
             for n in ("1", "2")]
    assert sorted(owned) == [3, 3], "six partitions, three each"
    await screenshot(page, "topics-two-instances")
    running.stop("notification-2")
    await page.wait_for_selector(f"{NOTIFICATION_GROUP}[data-instance='2']", state="detached", timeout=60_000)
    await page.wait_for_selector(f"{NOTIFICATION_GROUP}[data-instance='1'][data-state=Stable]", timeout=30_000)
    assert await page.locator(f"{NOTIFICATION_GROUP}[data-instance='1'] td.partitions span").count() == 6


async def a_killed_service(page, base, running, ops, db, sku) -> None:
    await page.goto(f"{base}/ops/topics")
    notification = "#services tr[data-service=notification]"
    await page.wait_for_selector(f"{notification}.ok", timeout=30_000)
    running.kill("notification")
    await page.wait_for_selector(f"{notification}.bad", timeout=30_000)
    assert await page.locator(f"{notification} td.ready").inner_text() == "NOT READY"
    await page.wait_for_selector(f"{NOTIFICATION_GROUP}[data-instance=''][data-state=Empty]", timeout=60_000)
    assert await page.locator(f"{NOTIFICATION_GROUP}[data-instance='1']").count() == 0, "its instance is gone"

    lag = "#lags tr[data-group$='oms.notification.orders.events.v1'][data-topic='orders.events.v1'] td.lag"

    async def total_lag() -> int:
        return sum(map(int, await page.locator(lag).all_inner_texts()))

    before = await total_lag()
    order = sample_order(unique("W"), lines=[(sku, 1)])
    await ops.send(order)
    await status(db, order_id_for(order.channel, order.channel_order_id), "confirmed")
    await eventually(lambda: total_lag_above(total_lag, before), timeout=30, interval=0.5,
                     what="notification's lag to grow")
    assert int(await page.locator(f"{NOTIFICATION_GROUP} td.lag").inner_text()) > 0, "nobody owns what waits"
    orders_events = "#topics tr[data-topic='orders.events.v1']"
    assert int(await page.locator(f"{orders_events} td").nth(1).inner_text()) > 0
    assert await page.locator(f"{orders_events} svg.spark polyline").count() == 2, "messages in and out, charted"
    await screenshot(page, "topics-service-killed")
    await screenshot(page, "topics-service-killed-first-screen", full_page=False)  # the README's (docs/console.png)
    await page.goto(f"{base}/ops/alerts")
    assert "OmsServiceNotReady" in await page.inner_text("#alerts")
    await screenshot(page, "alerts")


async def total_lag_above(total_lag, before: int) -> bool:
    return await total_lag() > before
