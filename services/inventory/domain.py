"""Pure reservation rules."""

from collections import Counter

from shared.contracts.common import Line


def merge_lines(lines: list[Line]) -> list[Line]:
    """One line per SKU, sorted: rows are then always locked in the same order, so concurrent orders cannot deadlock."""
    totals: Counter[str] = Counter()
    for line in lines:
        totals[line.sku] += line.quantity
    return [Line(sku=sku, quantity=qty) for sku, qty in sorted(totals.items())]
