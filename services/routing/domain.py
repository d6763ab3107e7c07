"""Pure sourcing rules, first version: one location per order.

- Ship-to orders go to the nearest location (great-circle distance) that ships to customers and has every
  line in stock.
- Pickup (BOPIS) orders go to their pickup store, which must accept pickups and have every line.
Excluded locations (ones that already failed this order) are never chosen.
"""

import math
from dataclasses import dataclass

from shared.contracts.common import Coordinates, Line, PickupInStore, ShipTo
from shared.contracts.inventory import LocationAvailability

EARTH_RADIUS_KM = 6371.0


@dataclass(frozen=True)
class Location:
    location_id: str
    kind: str
    coordinates: Coordinates
    ships_to_customers: bool
    accepts_pickup: bool


@dataclass(frozen=True)
class Decision:
    location_id: str | None
    explanation: str
    reason_code: str | None = None
    distance_km: float | None = None


def distance_km(a: Coordinates, b: Coordinates) -> float:
    lat1, lon1, lat2, lon2 = map(math.radians, (a.lat, a.lon, b.lat, b.lon))
    h = math.sin((lat2 - lat1) / 2) ** 2 + math.cos(lat1) * math.cos(lat2) * math.sin((lon2 - lon1) / 2) ** 2
    return 2 * EARTH_RADIUS_KM * math.asin(math.sqrt(h))


def can_fill(location_id: str, lines: list[Line], availability: list[LocationAvailability]) -> bool:
    stock = {a.sku: a.available for a in availability if a.location_id == location_id}
    return all(stock.get(line.sku, 0) >= line.quantity for line in lines)


def choose(delivery: ShipTo | PickupInStore, lines: list[Line], availability: list[LocationAvailability],
           locations: dict[str, Location], exclude: set[str]) -> Decision:
    if isinstance(delivery, PickupInStore):
        return _pickup(delivery.store_id, lines, availability, locations, exclude)
    return _nearest(delivery.address.coordinates, lines, availability, locations, exclude)


def _pickup(store_id: str, lines, availability, locations, exclude) -> Decision:
    store = locations.get(store_id)
    if store is None or not store.accepts_pickup:
        return Decision(None, f"{store_id} is not a known pickup store", "PICKUP_STORE_UNKNOWN")
    if store_id in exclude or not can_fill(store_id, lines, availability):
        return Decision(None, f"pickup store {store_id} cannot fill every line", "PICKUP_STORE_NO_STOCK")
    return Decision(store_id, f"customer collects at {store_id}, which has every line")


def _nearest(destination: Coordinates, lines, availability, locations, exclude) -> Decision:
    candidates = sorted(
        (distance_km(destination, loc.coordinates), loc.location_id)
        for loc in locations.values()
        if loc.ships_to_customers and loc.location_id not in exclude and can_fill(loc.location_id, lines, availability)
    )
    if not candidates:
        skipped = f" (excluded: {', '.join(sorted(exclude))})" if exclude else ""
        return Decision(None, f"no shipping location has every line in stock{skipped}", "NO_LOCATION_WITH_STOCK")
    distance, location_id = candidates[0]
    others = len(candidates) - 1
    return Decision(location_id, f"nearest of {others + 1} locations with every line: {location_id} at {distance:.0f} km",
                    distance_km=round(distance, 1))
