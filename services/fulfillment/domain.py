"""Pure fulfilment-order rules: progress only moves forward along its delivery's path (a location may skip
steps), and an order that has been handed over, rejected or cancelled is finished.

A ship-to order may be cancelled until it ships; a pickup order until the customer collects it (the goods go
back on the shelf)."""

PATHS = {
    "ship": ("requested", "accepted", "picked", "packed", "shipped", "delivered"),
    "pickup": ("requested", "accepted", "picked", "ready_for_pickup", "picked_up"),
}
FINISHED = frozenset({"delivered", "picked_up", "rejected", "cancelled"})
CANCELLABLE = frozenset({"requested", "accepted", "picked", "packed", "ready_for_pickup"})


def belongs(delivery: str, reported: str) -> bool:
    """Whether a location may report this status for this kind of delivery."""
    return reported == "rejected" or reported in PATHS[delivery]


def advances(delivery: str, current: str, reported: str) -> bool:
    if current in FINISHED or current == "shipped" and reported == "rejected":
        return False
    path = PATHS[delivery]
    return reported == "rejected" or path.index(reported) > path.index(current)
