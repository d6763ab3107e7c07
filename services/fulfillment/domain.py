"""Pure fulfilment-order rules: progress only moves forward (a location may skip steps), and an order that
has shipped, been rejected or been cancelled is finished."""

PROGRESS = ("requested", "picked", "packed", "shipped")
OPEN = frozenset({"requested", "picked", "packed"})


def advances(current: str, reported: str) -> bool:
    if current not in OPEN:
        return False
    return reported == "rejected" or PROGRESS.index(reported) > PROGRESS.index(current)
