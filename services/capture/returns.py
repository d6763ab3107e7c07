"""Returns (RMAs), pure rules: whether a return is accepted, where the goods go, and what a received return
refunds.

A return is accepted for units handed over (shipped or collected) and not yet in another return — so several
returns of an order never exceed what shipped — within the return window (days from the order's last
handover: the policy's default, a channel's own, or a SKU prefix's, the longest prefix winning; 0: not
returnable). The goods go to the location that shipped the first line's SKU, or to the policy's returns
centre. A received return refunds each received unit (restocked or disposed): its price less its share of the
line's discount, plus its share of the line's tax — shares taken cumulatively over the order's refunds, so
refunding a whole line in pieces refunds exactly the line. Shipping (and its tax) is refunded with the return
that brings back the last unit shipped, when the policy says so (`refund_shipping`; by default it does: in the
EU a customer who withdraws from the whole contract gets the standard delivery back, Directive 2011/83/EU
art. 13), never by an exchange (the replacement is shipped too).
"""

import tomllib
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from functools import cache
from typing import Literal
from pathlib import Path

import pydantic.dataclasses
from pydantic import ConfigDict

from shared.contracts.common import Line, ReasonCode, merge_lines, subtract_lines
from shared.contracts.money import Billing, ShipmentAmounts, shipment_amounts
from shared.contracts.orders import RequestReturn

DEFAULT_POLICY = Path(__file__).with_name("returns.toml")


@pydantic.dataclasses.dataclass(frozen=True, config=ConfigDict(extra="forbid", strict=True))
class ReturnPolicy:
    default_window_days: int = 30
    channel_window_days: dict[str, int] = field(default_factory=dict)
    sku_prefix_window_days: dict[str, int] = field(default_factory=dict)
    returns_centre: str | None = None
    refund_shipping: Literal["never", "when_everything_returned"] = "when_everything_returned"

    @property
    def longest_window_days(self) -> int:
        return max([self.default_window_days, *self.channel_window_days.values(),
                    *self.sku_prefix_window_days.values()])

    def window(self, channel: str, sku: str) -> timedelta:
        prefixes = [p for p in self.sku_prefix_window_days if sku.startswith(p)]
        if prefixes:
            return timedelta(days=self.sku_prefix_window_days[max(prefixes, key=len)])
        return timedelta(days=self.channel_window_days.get(channel, self.default_window_days))


@cache
def return_policy(path: Path | None = None) -> ReturnPolicy:
    """The policy file, checked: a setting of the wrong type or in the wrong table is refused with its name."""
    return ReturnPolicy(**tomllib.loads((path or DEFAULT_POLICY).read_text()))


@dataclass(frozen=True)
class OrderSoFar:
    """What the order handed over, from where, when last; and what its returns already take back."""

    shipped: list[Line]
    shipped_from: dict[str, str]  # SKU -> the first location that handed it over
    handed_over_at: datetime | None
    in_returns: list[Line]


def refusal(request: RequestReturn, order: OrderSoFar, policy: ReturnPolicy, now: datetime) -> ReasonCode | None:
    """Why the return cannot be accepted, or None."""
    wanted = merge_lines(list(request.lines))
    returnable = subtract_lines(order.shipped, order.in_returns) or []
    if order.handed_over_at is None or subtract_lines(returnable, wanted) is None:
        left = ", ".join(f"{line.quantity} {line.sku}" for line in returnable) or "nothing"
        return ReasonCode(code="NOTHING_TO_RETURN", detail=f"returnable: {left}")
    late = [line.sku for line in wanted if now - order.handed_over_at > policy.window(request.channel, line.sku)]
    if late:
        return ReasonCode(code="OUTSIDE_RETURN_WINDOW", detail=f"{', '.join(late)}: handed over "
                                                             f"{order.handed_over_at:%Y-%m-%d}")
    return None


def return_to(request: RequestReturn, order: OrderSoFar, policy: ReturnPolicy) -> str:
    return policy.returns_centre or order.shipped_from[request.lines[0].sku]


def refund(billing: Billing, received: list[Line], refunded_before: list[Line], shipped: list[Line],
           policy: ReturnPolicy, exchange: bool = False) -> ShipmentAmounts:
    """What a received return refunds: its units' prices, discount and tax shares, and shipping when it brings
    back the last unit shipped (as the policy says; not for an exchange)."""
    everything_back = subtract_lines(shipped, [*refunded_before, *received]) == []
    with_shipping = everything_back and not exchange and policy.refund_shipping == "when_everything_returned"
    return shipment_amounts(billing, merge_lines(received), Counter({line.sku: line.quantity
                                                                     for line in merge_lines(refunded_before)}),
                            first=with_shipping)
