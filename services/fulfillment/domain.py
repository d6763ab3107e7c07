"""Pure fulfilment-order rules: progress only moves forward (a location may skip steps), and an order that
has shipped, been rejected or been cancelled is finished."""

from uuid import UUID, uuid5

PROGRESS = ("requested", "picked", "packed", "shipped")
OPEN = frozenset({"requested", "picked", "packed"})


def advances(current: str, reported: str) -> bool:
    if current not in OPEN:
        return False
    return reported == "rejected" or PROGRESS.index(reported) > PROGRESS.index(current)


def fulfillment_order_id(order_id: UUID, location_id: str) -> UUID:
    """One fulfilment order per order and location, with an id anyone can recompute."""
    return uuid5(order_id, location_id)
