"""All six services as processes on real Kafka and Postgres, and a driver that plays channel, ERP and location."""

import asyncio
import os
import subprocess
import uuid
from dataclasses import dataclass

import asyncpg
import pytest
from playwright.async_api import async_playwright

from ops.client import Client, client
from ops.demo import sample_order
from ops.env import ROOT
from ops.principals import register_locations
from ops.processes import free_port
from ops.simulators import PaymentSimulator
from services.capture.validation import order_id_for
from shared.contracts.common import Coordinates
from shared.contracts.inventory import ReceiveStock
from shared.contracts.orders import PlaceOrder
from shared.contracts.routing import RegisterLocation
from shared.contracts.topics import DEAD_LETTERS, FULFILLMENT_EVENTS, FULFILLMENT_WORK, ORDER_EVENTS
from shared.db.bootstrap import SERVICES
from shared.settings import Settings

from ..support.receivers import MailServer, WebhookReceiver
from ..support.services import running
from ..support.topics import TopicWatcher
from ops.waiting import eventually

FRANKFURT = Coordinates(lat=50.11, lon=8.68)
BERLIN = Coordinates(lat=52.52, lon=13.40)


@pytest.fixture(scope="session")
async def mail_server():
    server = await MailServer().start()
    yield server
    await server.stop()


@pytest.fixture(scope="session")
async def webhooks():
    receiver = await WebhookReceiver().start()
    yield receiver
    await receiver.stop()


@pytest.fixture(scope="session")
def tracking_port() -> int:
    """Known before the services start: the notification service links to the tracking page there."""
    return free_port()


@pytest.fixture(scope="session", autouse=True)
def notification_env(mail_server, tracking_port):
    """Every notification process of the session mails the test's SMTP server, retries quickly and links to the
    session's tracking page."""
    env = {"OMS_SMTP_PORT": str(mail_server.port), "OMS_NOTIFICATION_RETRY_SECONDS": "0.2",
           "OMS_NOTIFICATION_RETRY_MAX_SECONDS": "1", "OMS_NOTIFICATION_MAX_ATTEMPTS": "3",
           "OMS_NOTIFICATION_SEND_TIMEOUT_SECONDS": "2", "OMS_NOTIFICATION_POLL_SECONDS": "0.1",
           "OMS_TRACKING_PAGE_URL": f"http://127.0.0.1:{tracking_port}",
           "OMS_ORDER_PURGE_INTERVAL_SECONDS": "0.5"}  # test_retention.py dates orders back
    os.environ.update(env)
    return env


@pytest.fixture(scope="session")
async def oms(config, tmp_path_factory, notification_env, tracking_port):
    async with running(SERVICES, tmp_path_factory.mktemp("services"), ports={"tracking": tracking_port}) as procs:
        yield procs


@pytest.fixture(scope="session")
def chromium() -> str:
    """Debian's chromium, installed like the deploy scripts install what they miss (apt, when root, only when
    missing). Without it the page's tests cannot run: in CI that fails them."""
    found = subprocess.run(["bash", "-c", f'. "{ROOT}/deploy/lib.sh" && need_command chromium chromium && '
                                          "command -v chromium"], capture_output=True, text=True)
    if found.returncode != 0:
        give_up = pytest.fail if os.environ.get("CI") else pytest.skip
        give_up(f"chromium is needed: {found.stderr.strip()}")
    return found.stdout.strip()


@pytest.fixture(scope="session")
async def browser(chromium):
    """Headless chromium driven by Playwright (its own browser builds are never downloaded)."""
    async with async_playwright() as playwright:
        launched = await playwright.chromium.launch(executable_path=chromium, headless=True)
        yield launched
        await launched.close()


@dataclass
class Driver:
    config: Settings
    db: asyncpg.Pool
    channel: Client
    orders: TopicWatcher
    erp: TopicWatcher
    work: TopicWatcher
    dead_letters: TopicWatcher

    @staticmethod
    def unique(prefix: str) -> str:
        return f"{prefix}-{uuid.uuid4().hex[:8].upper()}"

    async def location(self, location_id: str, coordinates: Coordinates, **flags) -> None:
        await register_locations(self.channel, [RegisterLocation(
            location_id=location_id, name=location_id, kind=flags.pop("kind", "warehouse"), coordinates=coordinates,
            **flags)])
        await eventually(lambda: self.db.fetchval("SELECT 1 FROM routing.locations WHERE location_id = $1",
                                                  location_id), what=f"location {location_id}")

    async def stock(self, sku: str, location_id: str, quantity: int) -> None:
        await self.channel.send(ReceiveStock(receipt_id=self.unique("R"), sku=sku, location_id=location_id,
                                             quantity=quantity))
        await eventually(lambda: self.db.fetchval(
            "SELECT 1 FROM inventory.location_stock WHERE sku = $1 AND location_id = $2", sku, location_id),
            what=f"stock of {sku} at {location_id}")

    async def stocked_sku(self, units: int, prefix: str = "SKU") -> str:
        """A new SKU with `units` on hand at a new warehouse in Frankfurt."""
        location, sku = self.unique("WH"), self.unique(prefix)
        await self.location(location, FRANKFURT)
        await self.stock(sku, location, units)
        return sku

    def order(self, lines: list[tuple[str, int]], **kwargs) -> PlaceOrder:
        return sample_order(self.unique("W"), lines=lines, **kwargs)

    @staticmethod
    def order_id(order: PlaceOrder) -> uuid.UUID:
        return order_id_for(order.channel, order.channel_order_id)

    async def status(self, order_id, *expected: str, timeout: float = 30) -> str:
        async def current():
            status = await self.db.fetchval("SELECT status FROM capture.orders WHERE order_id = $1", order_id)
            return status if status in expected else None

        return await eventually(current, timeout=timeout, what=f"order {order_id} to be {' or '.join(expected)}")

    async def count(self, sql: str, *args) -> int:
        return await self.db.fetchval(sql, *args)


@pytest.fixture
async def driver(config, admin, oms):
    async with client(config, "test/channel") as channel, TopicWatcher(config, ORDER_EVENTS) as orders, \
            TopicWatcher(config, FULFILLMENT_EVENTS) as erp, \
            TopicWatcher(config, FULFILLMENT_WORK, every_party=True) as work, \
            TopicWatcher(config, DEAD_LETTERS) as dead_letters:
        yield Driver(config, admin, channel, orders, erp, work, dead_letters)


@pytest.fixture
async def payments(driver):
    """A payment service stand-in answering the session's payment commands (all of them: other tests' too)."""
    async with client(driver.config, "test/payments") as answers:
        simulator = PaymentSimulator(driver.config, answers, group=driver.unique("payments"))
        task = asyncio.create_task(simulator.run())
        yield simulator
        task.cancel()
