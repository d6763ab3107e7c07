"""Pure fulfilment-order progress rules: status only moves forward; a location may skip steps."""

PROGRESS = ("requested", "picked", "packed", "shipped")


def advances(current: str, reported: str) -> bool:
    return PROGRESS.index(reported) > PROGRESS.index(current)
