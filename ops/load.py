"""A channel simulator: a network of locations with stock, and a realistic stream of orders.

The mix: mostly ship-to orders of one to three lines with popular SKUs far more frequent (Zipf-like), some
buy-online-pick-up-in-store, some for a dropship vendor's SKUs (a purchase order), some split over two warehouses
(each has one of their SKUs), some preorders of a SKU that is only announced (they wait as backorders until its
receipt, sent after the orders, arrives), some that must fail: a scarce SKU (no stock) or a pickup store without
the goods (no route, so the reservation is compensated).
Holds: one order in eight is put on hold by command right after it is placed (HoldOrder: manual, address check
or payment review), and a few large first orders of new customers are held by capture's rule when it runs with
OMS_HOLD_NEW_CUSTOMER_ABOVE=150 (NEW_CUSTOMER_HOLD_ABOVE); the hold desk (ops/simulators.py) releases every hold a
moment later, except address checks: customer service (EditDesk) changes those orders while they wait (address,
one more unit, one fewer) and then releases them; it also cancels the last line of some orders a location has.
Customers return some of what shipped, some as exchanges (CustomerSimulator).
"""

import asyncio
import random
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date, timedelta
from decimal import Decimal

from shared.contracts.common import Address, Coordinates, PickupInStore, ShipTo
from shared.contracts import Contract
from shared.contracts.inventory import ExpectReceipt, ReceiveStock
from shared.contracts.orders import Customer, Hold, HoldOrder, PlaceOrder, PricedLine
from shared.contracts.payments import Authorization
from shared.contracts.routing import RegisterLocation

from . import demo
from .client import Client
from .principals import register_locations

CITIES = [Coordinates(lat=52.52, lon=13.40), Coordinates(lat=53.55, lon=9.99), Coordinates(lat=48.14, lon=11.58),
          Coordinates(lat=50.94, lon=6.96), Coordinates(lat=50.11, lon=8.68), Coordinates(lat=51.34, lon=12.37)]
VENDOR_SKUS = 3
UNIT_PRICE = Decimal("9.99")
NEW_CUSTOMER_UNITS = 20  # a new customer's large first order: worth 199.80, every other order of the mix under 100
NEW_CUSTOMER_HOLD_ABOVE = Decimal("150")  # OMS_HOLD_NEW_CUSTOMER_ABOVE that holds those and no other order
HOLD_EVERY = 8  # one order in eight is held by command
HOLD_REASONS = ("manual", "address_check", "payment_review")


@dataclass(frozen=True)
class Network:
    """Locations and SKUs for a load run; names carry a run tag so runs never share stock."""

    tag: str
    skus: int = 50
    units: int = 1_000_000
    scarce_units: int = 20

    @property
    def warehouses(self) -> list[str]:
        return [f"{self.tag}-WH{i}" for i in range(1, 4)]

    @property
    def pickup_store(self) -> str:
        return f"{self.tag}-ST1"

    @property
    def empty_store(self) -> str:
        return f"{self.tag}-ST2"

    @property
    def scarce_sku(self) -> str:
        return f"{self.tag}-SCARCE"

    @property
    def preorder_sku(self) -> str:
        """A SKU not in stock yet, only announced (ExpectReceipt): orders for it wait (backorders) until it comes."""
        return f"{self.tag}-PRE"

    @property
    def preorder_receipt(self) -> str:
        return f"{self.tag}:PO-PRE"

    @property
    def split_skus(self) -> tuple[str, str]:
        """Two SKUs, each at one warehouse only: an order of both is split."""
        return f"{self.tag}-LEFT", f"{self.tag}-RIGHT"

    def sku(self, rank: int) -> str:
        return f"{self.tag}-SKU{rank:03d}"

    @property
    def vendor(self) -> RegisterLocation:
        """The demo's dropship vendor: the live rule set (services/routing/rules.toml) lists it for SOCKS- SKUs."""
        return next(location for location in demo.LOCATIONS if location.kind == "dropship")

    def vendor_sku(self, i: int) -> str:
        return f"SOCKS-{self.tag}-{i}"

    def locations(self) -> list[RegisterLocation]:
        warehouses = [RegisterLocation(location_id=loc, name=loc, kind="warehouse", coordinates=CITIES[i])
                      for i, loc in enumerate(self.warehouses)]
        stores = [RegisterLocation(location_id=loc, name=loc, kind="store", coordinates=CITIES[3 + i],
                                   ships_to_customers=False, accepts_pickup=True)
                  for i, loc in enumerate((self.pickup_store, self.empty_store))]
        return warehouses + stores + [self.vendor]

    def receipts(self) -> list[ReceiveStock]:
        stock = [(self.sku(r), loc, self.units) for r in range(self.skus) for loc in self.warehouses]
        stock += [(self.sku(r), self.pickup_store, self.units) for r in range(10)]
        stock += [(self.sku(0), self.empty_store, 1)]  # known to the store, but never enough of it
        stock += [(self.scarce_sku, self.warehouses[0], self.scarce_units)]
        stock += [(sku, loc, self.units) for sku, loc in zip(self.split_skus, self.warehouses[::2], strict=True)]
        stock += [(self.vendor_sku(i), self.vendor.location_id, self.units) for i in range(VENDOR_SKUS)]
        return [ReceiveStock(receipt_id=f"{self.tag}:{loc}:{sku}", sku=sku, location_id=loc, quantity=qty)
                for sku, loc, qty in stock]

    def announcements(self) -> list[ExpectReceipt]:
        return [ExpectReceipt(receipt_id=self.preorder_receipt, sku=self.preorder_sku, location_id=self.warehouses[0],
                              quantity=1, expected_on=date.today() + timedelta(days=7))]

    def arrival(self, waiting: int) -> ReceiveStock:
        """The announced receipt, with what the waiting orders need (sent after the orders)."""
        return ReceiveStock(receipt_id=self.preorder_receipt, sku=self.preorder_sku, location_id=self.warehouses[0],
                            quantity=max(waiting, 1))


def orders(network: Network, count: int, seed: int = 7, *, failures: bool = True) -> Iterator[PlaceOrder]:
    """The order stream; without `failures`, only orders that can succeed (for throughput measurements)."""
    rng = random.Random(seed)
    weights = [1 / (rank + 1) for rank in range(network.skus)]
    customer = Customer(customer_id="LOAD", email="load@example.com", name="Load Test")
    for n in range(count):
        roll = rng.random() if failures else 0.5
        skus = rng.choices(range(network.skus), weights, k=rng.choice((1, 1, 2, 3)))
        lines = {network.sku(rank): rng.randint(1, 3) for rank in skus}
        buyer = customer
        if roll < 0.15:
            lines = {network.sku(rng.randrange(10)): 1}
            delivery = PickupInStore(store_id=network.pickup_store)
        elif roll < 0.20:
            lines = {network.sku(0): 2}
            delivery = PickupInStore(store_id=network.empty_store)
        else:
            if roll < 0.28:
                lines[network.scarce_sku] = 1
            elif roll < 0.31:  # a preorder: waits for the announced receipt, which arrives after every order
                lines = {network.preorder_sku: 1}
            elif roll < 0.36:  # a split: worth more than the rule set's minimum (50)
                lines = {sku: 3 for sku in network.split_skus}
            elif roll < 0.39:  # a new customer's large first order: held by the new-customer rule where it is on
                lines = {network.sku(skus[0]): NEW_CUSTOMER_UNITS}
                buyer = Customer(customer_id=f"NEW-{network.tag}-{n}", email="new@example.com", name="New Customer")
            elif roll >= 0.94:  # the vendor's own SKUs only: no single location holds them with others
                lines = {network.vendor_sku(rng.randrange(VENDOR_SKUS)): rng.randint(1, 3)}
            city = rng.choice(CITIES)
            delivery = ShipTo(address=Address(name="Load Test", line1="Street 1", city="City", postal_code="10000",
                                              country="DE", coordinates=city))
        order = PlaceOrder(
            channel="load", channel_order_id=f"{network.tag}-{n:07d}", customer=buyer, currency="EUR",
            lines=[PricedLine(sku=sku, quantity=qty, unit_price=UNIT_PRICE,
                              allow_backorder=sku == network.preorder_sku) for sku, qty in lines.items()],
            delivery=delivery,
        )
        authorized = Authorization(provider="load-psp", reference=f"auth-{network.tag}-{n}",
                                   amount=order.computed_totals().total)
        yield order.model_copy(update={"payment": authorized})


def stream(network: Network, count: int, seed: int = 7) -> list[Contract]:
    """The orders, one in HOLD_EVERY followed by its hold, then the arrival of the announced receipt that the
    preorders among them wait for."""
    placed = list(orders(network, count, seed))
    waiting = sum(line.quantity for order in placed for line in order.lines if line.sku == network.preorder_sku)
    with_holds = [message for n, order in enumerate(placed)
                  for message in ([order, hold(order, n)] if n % HOLD_EVERY == HOLD_EVERY // 2 else [order])]
    return [*with_holds, network.arrival(waiting)]


def hold(order: PlaceOrder, n: int) -> HoldOrder:
    """Ops holds the order as it comes in (same key: capture takes it after the order)."""
    reason = HOLD_REASONS[n // HOLD_EVERY % len(HOLD_REASONS)]
    return HoldOrder(channel=order.channel, channel_order_id=order.channel_order_id,
                     hold=Hold(reason=reason, placed_by="load", note="held by oms load, released by its hold desk"))


async def seed(client: Client, network: Network) -> None:
    await register_locations(client, network.locations())
    await client.send_many(network.receipts())
    await client.send_many(network.announcements())


async def publish(client: Client, stream: list[Contract], rate: float | None = None, *,
                  progress: bool = False, chunk: int = 100) -> float:
    """Publish at `rate` orders/s (None: as fast as possible). Returns the seconds it took."""
    started = time.monotonic()
    for i in range(0, len(stream), chunk):
        part = stream[i:i + chunk]
        await client.send_many(part)
        sent = i + len(part)
        if rate:
            ahead = sent / rate - (time.monotonic() - started)
            if ahead > 0:
                await asyncio.sleep(ahead)
        if progress:
            _progress(sent, len(stream), started)
    if progress:
        sys.stdout.write("\n")
    return time.monotonic() - started


def _progress(done: int, total: int, started: float) -> None:
    elapsed = max(time.monotonic() - started, 1e-6)
    width = 30
    filled = int(width * done / total)
    sys.stdout.write(f"\r[{'#' * filled}{'.' * (width - filled)}] {done}/{total} messages  {done / elapsed:,.0f}/s")
    sys.stdout.flush()


def run_tag() -> str:
    return "L" + uuid.uuid4().hex[:6].upper()
