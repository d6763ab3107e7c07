"""What-if: past routing requests replayed through a rule set, and two replays compared. Pure: the caller reads
the requests, the locations and the capacity already used, and prints what comes out.

Each request is decided as the routing service decides it (`domain.choose`, over the locations it names), in the
order the requests were made; every location of a plan takes one fulfilment order of its capacity on the day of
the request, so a small capacity fills up and sends later orders elsewhere, or nowhere. Capacity given back by
cancellations and rejections within the window is not simulated.
"""

from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import Decimal
from uuid import UUID

from .domain import Decision, Location, Network, Order, choose
from .rules import RuleSet

CapacityUse = dict[tuple[str, date], int]  # fulfilment orders per (location, day)


@dataclass(frozen=True)
class Request:
    """One routing request of the past: the order as routing saw it, and when."""

    order_id: UUID
    at: datetime
    order: Order

    @property
    def day(self) -> date:
        return self.at.astimezone(UTC).date()


@dataclass(frozen=True)
class Outcome:
    """One request decided under one rule set."""

    request: Request
    decision: Decision

    @property
    def locations(self) -> tuple[str, ...]:
        return tuple(a.location_id for a in self.decision.assignments)

    @property
    def distance_km(self) -> float | None:
        """From each location of the plan to the customer; none for a pickup or an address without coordinates."""
        distances = [c.distance_km for c in self._chosen() if c.distance_km is not None]
        return sum(distances) if distances else None

    @property
    def shipping_cost(self) -> Decimal:
        return sum((c.shipping_cost for c in self._chosen() if c.shipping_cost is not None), Decimal(0))

    def describe(self) -> str:
        return "+".join(self.locations) if self.locations else f"unfulfillable ({self.decision.reason_code})"

    def _chosen(self):
        return [c for c in self.decision.details.candidates if c.chosen]


@dataclass(frozen=True)
class Replay:
    rule_set: str
    outcomes: tuple[Outcome, ...]
    capacity_use: CapacityUse  # what the window started with, plus what the replay took


def replay(requests: Iterable[Request], locations: dict[str, Location], rules: RuleSet,
           used_at_start: CapacityUse | None = None) -> Replay:
    used = Counter(used_at_start or {})
    outcomes = []
    for request in sorted(requests, key=lambda r: r.at):
        nearby = named_locations(request.order) & locations.keys()
        network = Network({i: locations[i] for i in nearby}, {i: used[(i, request.day)] for i in nearby})
        outcome = Outcome(request, choose(request.order, network, rules))
        used.update((location_id, request.day) for location_id in outcome.locations)
        outcomes.append(outcome)
    return Replay(rules.label, tuple(outcomes), dict(used))


def named_locations(order: Order) -> set[str]:
    """What the routing service loads for a request: the locations with stock, and the pickup store."""
    named = {a.location_id for a in order.availability}
    store_id = getattr(order.delivery, "store_id", None)
    return named | {store_id} if store_id else named


@dataclass(frozen=True)
class NodeUse:
    location_id: str
    daily_capacity: int | None
    peak_day_orders: int  # the most fulfilment orders it held on one day of the window

    @property
    def peak_share(self) -> float | None:
        return self.peak_day_orders / self.daily_capacity if self.daily_capacity else None


@dataclass(frozen=True)
class Summary:
    rule_set: str
    requests: int
    routed: int
    unfulfillable: dict[str, int]  # by reason code
    total_distance_km: float
    mean_distance_km: float | None  # over the routed orders that have a distance
    shipping_cost: Decimal
    split_orders: int
    fulfilment_orders: int
    capacity: tuple[NodeUse, ...]  # each location the window used, by id


def summarise(result: Replay, locations: dict[str, Location]) -> Summary:
    routed = [o for o in result.outcomes if o.locations]
    distances = [d for o in routed if (d := o.distance_km) is not None]
    days = {o.request.day for o in result.outcomes}
    return Summary(
        rule_set=result.rule_set,
        requests=len(result.outcomes),
        routed=len(routed),
        unfulfillable=dict(sorted(Counter(o.decision.reason_code for o in result.outcomes
                                          if not o.locations).items())),
        total_distance_km=round(sum(distances), 1),
        mean_distance_km=round(sum(distances) / len(distances), 1) if distances else None,
        shipping_cost=sum((o.shipping_cost for o in routed), Decimal(0)),
        split_orders=sum(1 for o in routed if len(o.locations) > 1),
        fulfilment_orders=sum(len(o.locations) for o in routed),
        capacity=_capacity(result.capacity_use, days, locations),
    )


def _capacity(use: CapacityUse, days: set[date], locations: dict[str, Location]) -> tuple[NodeUse, ...]:
    peaks: Counter[str] = Counter()
    for (location_id, day), orders in use.items():
        if day in days:
            peaks[location_id] = max(peaks[location_id], orders)
    return tuple(NodeUse(i, locations[i].daily_capacity if i in locations else None, peaks[i]) for i in sorted(peaks))


@dataclass(frozen=True)
class WhatIf:
    live: Summary
    candidate: Summary
    pairs: tuple[tuple[Outcome, Outcome], ...]  # each request: live, candidate

    @property
    def changed(self) -> list[tuple[Outcome, Outcome]]:
        return [(live, candidate) for live, candidate in self.pairs if live.describe() != candidate.describe()]


def what_if(requests: Sequence[Request], locations: dict[str, Location], live: RuleSet, candidate: RuleSet,
            used_at_start: CapacityUse | None = None) -> WhatIf:
    """The same requests, from the same capacity, under the live rule set and the candidate."""
    replays = [replay(requests, locations, rules, used_at_start) for rules in (live, candidate)]
    return WhatIf(*(summarise(r, locations) for r in replays), tuple(zip(*(r.outcomes for r in replays))))
