"""Pure fulfilment-order rules: progress only moves forward along its delivery's path (a location may skip
steps), and an order that has been handed over, rejected or cancelled is finished.

A ship-to order may be cancelled until it ships (any of it); a pickup order until the customer collects it (the
goods go back on the shelf). A ship-to order may ship in several parcels (partially_shipped until the last).

A dropship vendor gets a ship-to order as a purchase order, asked to ship within SHIP_WITHIN; it acknowledges
(`accepted`), rejects and ships like any location."""

from datetime import date, timedelta

PATHS = {
    "ship": ("requested", "accepted", "picked", "packed", "partially_shipped", "shipped", "delivered"),
    "pickup": ("requested", "accepted", "picked", "ready_for_pickup", "picked_up"),
}
FINISHED = frozenset({"delivered", "picked_up", "rejected", "cancelled"})
CANCELLABLE = frozenset({"requested", "accepted", "picked", "packed", "ready_for_pickup"})
SHIP_WITHIN = timedelta(days=2)


def is_purchase_order(location_kind: str | None, delivery: str) -> bool:
    """A vendor ships to the customer; a location fulfillment has not heard of is sent ordinary work."""
    return location_kind == "dropship" and delivery == "ship"


def ship_by(issued: date) -> date:
    return issued + SHIP_WITHIN


def belongs(delivery: str, reported: str) -> bool:
    """Whether a location may report this status for this kind of delivery."""
    return reported == "rejected" or reported in PATHS[delivery]


def status_after(current: str, reported: str, left_to_ship: bool) -> str:
    """A shipment that leaves units behind is partial; a rejection after one closes the order as shipped (the
    location shipped what it could: a short pick)."""
    if reported == "shipped" and left_to_ship:
        return "partially_shipped"
    if reported == "rejected" and current == "partially_shipped":
        return "shipped"
    return reported


def advances(delivery: str, current: str, reported: str) -> bool:
    if current in FINISHED or current == "shipped" and reported == "rejected":
        return False
    path = PATHS[delivery]
    return reported == "rejected" or path.index(reported) > path.index(current)
