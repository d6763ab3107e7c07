"""Demo data: a small network of locations with stock, and sample channel orders."""

import random
import uuid
from decimal import Decimal

from shared.contracts.common import Address, Coordinates, PickupInStore, ShipTo
from shared.contracts.inventory import ReceiveStock
from shared.contracts.orders import Customer, PlaceOrder, PricedLine
from shared.contracts.routing import RegisterLocation, Zone

LOCATIONS = [
    RegisterLocation(location_id="WH-BERLIN", name="Berlin warehouse", kind="warehouse",
                     coordinates=Coordinates(lat=52.52, lon=13.40), daily_capacity=5000,
                     zones=[Zone(country="DE", postal_prefixes=["0", "1"])]),
    RegisterLocation(location_id="WH-HAMBURG", name="Hamburg warehouse", kind="warehouse",
                     coordinates=Coordinates(lat=53.55, lon=9.99), daily_capacity=5000,
                     zones=[Zone(country="DE", postal_prefixes=["2", "3", "4"])]),
    RegisterLocation(location_id="WH-MUNICH", name="Munich warehouse", kind="warehouse",
                     coordinates=Coordinates(lat=48.14, lon=11.58), daily_capacity=5000,
                     zones=[Zone(country="DE", postal_prefixes=["6", "7", "8", "9"]), Zone(country="AT")]),
    # Ships from store (not bulky SKUs: services/routing/rules.toml), a few orders a day, and takes pickups.
    RegisterLocation(location_id="ST-COLOGNE", name="Cologne store", kind="store",
                     coordinates=Coordinates(lat=50.94, lon=6.96), accepts_pickup=True, daily_capacity=20,
                     zones=[Zone(country="DE", postal_prefixes=["5"])]),
    # Serves only the SKUs the rule set lists for it (SOCKS-).
    RegisterLocation(location_id="DS-ACME", name="Acme dropship vendor", kind="dropship",
                     coordinates=Coordinates(lat=51.34, lon=12.37), zones=[Zone(country="DE")]),
]

# Outside parties with Kafka principals of their own (`oms up`): the demo channel and every location.
PARTIES = [("channel", "web"), *(("location", location.location_id) for location in LOCATIONS)]

SKUS = ["TSHIRT-RED-M", "TSHIRT-BLUE-L", "JEANS-32-32", "SNEAKER-42", "CAP-BLACK", "SOCKS-3PACK"]

CITIES = {
    "Berlin": Coordinates(lat=52.52, lon=13.40),
    "Hamburg": Coordinates(lat=53.55, lon=9.99),
    "Munich": Coordinates(lat=48.14, lon=11.58),
    "Cologne": Coordinates(lat=50.94, lon=6.96),
    "Leipzig": Coordinates(lat=51.34, lon=12.37),
    "Frankfurt": Coordinates(lat=50.11, lon=8.68),
}


def stock_receipts(units: int = 100, seed_id: str = "demo") -> list[ReceiveStock]:
    return [
        ReceiveStock(receipt_id=f"{seed_id}:{loc.location_id}:{sku}", sku=sku, location_id=loc.location_id,
                     quantity=units)
        for loc in LOCATIONS for sku in SKUS
    ]


def address(city: str = "Frankfurt", postal_code: str | None = None) -> Address:
    """With a postal code: an address without coordinates, routed by zone."""
    return Address(name="A. Customer", line1="Hauptstrasse 1", city=city, postal_code=postal_code or "60311",
                   country="DE", coordinates=None if postal_code else CITIES[city])


def sample_order(channel_order_id: str | None = None, *, lines: list[tuple[str, int]] | None = None,
                 city: str = "Frankfurt", pickup_store: str | None = None, channel: str = "web",
                 postal_code: str | None = None) -> PlaceOrder:
    lines = lines or [(random.choice(SKUS), random.randint(1, 3))]
    delivery = (PickupInStore(store_id=pickup_store) if pickup_store
                else ShipTo(address=address(city, postal_code)))
    return PlaceOrder(
        channel=channel,
        channel_order_id=channel_order_id or f"W-{uuid.uuid4().hex[:10].upper()}",
        customer=Customer(customer_id="C-1", email="customer@example.com", name="A. Customer"),
        currency="EUR",
        lines=[PricedLine(sku=sku, quantity=qty, unit_price=Decimal("19.99")) for sku, qty in lines],
        delivery=delivery,
    )
