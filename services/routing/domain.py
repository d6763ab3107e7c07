"""Pure sourcing rules: which locations may serve an order, how they score, and the plan (one location, or a
split within the rule set's limit), with the explanation of every candidate.

- Ship-to orders may go to warehouses that ship, stores with ship-from-store on (not for SKU classes the rule set
  keeps from stores), and dropship vendors for the SKUs they carry. A location that already failed the order, is
  out of its daily capacity or, for an address without coordinates, has no zone covering it, is rejected.
  The rest are scored by the rule set (distance, shipping cost, priority; lowest wins); the plan uses the fewest
  locations that can serve every line, then the lowest total score.
- Pickup (BOPIS) orders go to their pickup store, which must accept pickups and have every line.
Whole lines are assigned: one line is never divided between locations.
"""

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from decimal import Decimal
from functools import cached_property
from itertools import combinations

from shared.contracts.common import Address, Coordinates, Line, PickupInStore, ShipTo
from shared.contracts.inventory import LocationAvailability
from shared.contracts.routing import Assignment, Candidate, Rejection, RoutingExplanation, Zone

from .rules import RuleSet

EARTH_RADIUS_KM = 6371.0
MAX_SPLIT_CANDIDATES = 16  # best-scored locations a split plan is drawn from: bounds the combinations tried
MAX_REJECTIONS_IN_TEXT = 10  # the words stay short (they travel in OrderCancelled); `details` has every one


@dataclass(frozen=True)
class Location:
    location_id: str
    kind: str
    coordinates: Coordinates
    ships_to_customers: bool
    accepts_pickup: bool
    daily_capacity: int | None = None
    zones: tuple[Zone, ...] = ()


@dataclass(frozen=True)
class Decision:
    assignments: tuple[Assignment, ...]
    explanation: str
    details: RoutingExplanation
    reason_code: str | None = None
    distance_km: float | None = None

    @property
    def location_id(self) -> str | None:
        return self.assignments[0].location_id if self.assignments else None


@dataclass(frozen=True)
class Order:
    """What routing decides on, besides the network."""

    delivery: ShipTo | PickupInStore
    lines: Sequence[Line]
    availability: Sequence[LocationAvailability]
    exclude: frozenset[str] = frozenset()
    order_value: Decimal | None = None
    sources: tuple[str | None, ...] = ()  # per line: the only location that may serve it (a divided line's share)

    def may_serve(self, index: int, location_id: str) -> bool:
        return index >= len(self.sources) or self.sources[index] in (None, location_id)

    @cached_property
    def stock(self) -> dict[tuple[str, str], int]:
        """Units available by (location, SKU)."""
        return {(a.location_id, a.sku): a.available for a in self.availability}


@dataclass(frozen=True)
class Network:
    """The locations routing knows and how many fulfilment orders each has taken today."""

    locations: dict[str, Location]
    used_today: dict[str, int] = field(default_factory=dict)


def distance_km(a: Coordinates, b: Coordinates) -> float:
    lat1, lon1, lat2, lon2 = map(math.radians, (a.lat, a.lon, b.lat, b.lon))
    h = math.sin((lat2 - lat1) / 2) ** 2 + math.cos(lat1) * math.cos(lat2) * math.sin((lon2 - lon1) / 2) ** 2
    return 2 * EARTH_RADIUS_KM * math.asin(math.sqrt(h))


def in_zone(zones: Sequence[Zone], address: Address) -> bool:
    return any(zone.country == address.country
               and (not zone.postal_prefixes or any(address.postal_code.startswith(p) for p in zone.postal_prefixes))
               for zone in zones)


def choose(order: Order, network: Network, rules: RuleSet) -> Decision:
    if isinstance(order.delivery, PickupInStore):
        return _pickup(order, order.delivery.store_id, network, rules)
    return _ship(order, order.delivery.address, network, rules)


# --- pickup -------------------------------------------------------------------------------------------------

def _pickup(order: Order, store_id: str, network: Network, rules: RuleSet) -> Decision:
    others = [Candidate(location_id=loc.location_id, kind=loc.kind, rejected="NOT_PICKUP_STORE")
              for loc in _sorted(network.locations) if loc.location_id != store_id]
    store = network.locations.get(store_id)
    if store is None or not store.accepts_pickup:
        details = _details(rules, "pickup", others)
        return Decision((), f"{store_id} is not a known pickup store", details, "PICKUP_STORE_UNKNOWN")
    verdict = _pickup_verdict(order, store)
    details = _details(rules, "pickup", [verdict, *others])
    if verdict.rejected:
        return Decision((), f"pickup store {store_id} cannot fill every line ({verdict.detail})", details,
                        "PICKUP_STORE_NO_STOCK")
    return Decision((Assignment(location_id=store_id, lines=list(order.lines), location_kind=store.kind),),
                    f"customer collects at {store_id}, which has every line", details)


def _pickup_verdict(order: Order, store: Location) -> Candidate:
    if store.location_id in order.exclude:
        return Candidate(location_id=store.location_id, kind=store.kind, rejected="EXCLUDED",
                         detail="already failed this order")
    missing = [line.sku for line in order.lines if order.stock.get((store.location_id, line.sku), 0) < line.quantity]
    if missing:
        return Candidate(location_id=store.location_id, kind=store.kind, rejected="NO_STOCK",
                         detail=f"short of {', '.join(missing)}")
    return Candidate(location_id=store.location_id, kind=store.kind, chosen=True,
                     lines=[line.sku for line in order.lines])


# --- ship to an address ----------------------------------------------------------------------------------------

@dataclass(frozen=True)
class _Eligible:
    location: Location
    lines: frozenset[int]  # indices of the order's lines it can serve
    distance_km: float | None
    shipping_cost: Decimal
    priority: float
    score: float


def _ship(order: Order, address: Address, network: Network, rules: RuleSet) -> Decision:
    """Whole lines first; failing that, within a split limit, a line no location has enough of is divided among
    the locations that have it (the network's stock is summed for the customer, so it must be servable too)."""
    decision = _ship_lines(order, address, network, rules)
    if decision.assignments or split_limit(order.order_value, rules) < 2:
        return decision
    divided = divide_short_lines(order, network, lambda location: _scored_terms(location, address, rules)[3])
    if divided == order:
        return decision
    shared_out = _ship_lines(divided, address, network, rules)
    return shared_out if shared_out.assignments else decision


def divide_short_lines(order: Order, network: Network, score: Callable[[Location], float]) -> Order:
    """Each line that no shipping location has in full becomes shares, the largest stocks first (the best score
    among equals), each share pinned to its location. A line the network cannot cover stays whole."""
    shipping = {loc.location_id: score(loc) for loc in network.locations.values()
                if loc.ships_to_customers and loc.location_id not in order.exclude}
    lines: list[Line] = []
    sources: list[str | None] = []
    for line in order.lines:
        stocks = sorted(((n, loc) for (loc, sku), n in order.stock.items()
                         if sku == line.sku and loc in shipping and n > 0),
                        key=lambda s: (-s[0], shipping[s[1]], s[1]))
        if not stocks or stocks[0][0] >= line.quantity or sum(n for n, _ in stocks) < line.quantity:
            lines.append(line)
            sources.append(None)
            continue
        left = line.quantity
        for n, location_id in stocks:
            if left:
                lines.append(Line(sku=line.sku, quantity=min(n, left)))
                sources.append(location_id)
                left -= min(n, left)
    return replace(order, lines=tuple(lines), sources=tuple(sources)) if any(sources) else order


def _ship_lines(order: Order, address: Address, network: Network, rules: RuleSet) -> Decision:
    rejected: dict[str, Candidate] = {}
    eligible: dict[str, _Eligible] = {}
    for location in _sorted(network.locations):
        result = _evaluate(location, order, address, network, rules)
        if isinstance(result, _Eligible):
            eligible[location.location_id] = result
        else:
            rejected[location.location_id] = result
    limit = split_limit(order.order_value, rules)
    plan = plan_assignments(len(order.lines), {i: e.lines for i, e in eligible.items()},
                            {i: e.score for i, e in eligible.items()}, limit)
    verdicts = {**rejected, **_eligible_verdicts(eligible, dict(plan or []), limit, plan is not None, order, rules)}
    routed_by = "distance" if address.coordinates else "zone"
    details = _details(rules, routed_by, [verdicts[i] for i in sorted(verdicts)], limit)
    if plan is None:
        return Decision((), _no_route_text(details, address), details, "NO_LOCATION_WITH_STOCK")
    assignments = tuple(Assignment(location_id=location_id, lines=[order.lines[i] for i in sorted(indices)],
                                   location_kind=eligible[location_id].location.kind)
                        for location_id, indices in plan)
    return Decision(assignments, _routed_text(plan, eligible, details, routed_by, order), details,
                    distance_km=_rounded(eligible[plan[0][0]].distance_km))


def _eligible_verdicts(eligible: dict[str, _Eligible], chosen: dict[str, frozenset[int]], limit: int,
                       planned: bool, order: Order, rules: RuleSet) -> dict[str, Candidate]:
    """A location lacking some lines is rejected for them unless it could have been part of a split."""
    might_split = limit > 1 and planned
    return {location_id: _scored(e, order, chosen.get(location_id))
            if location_id in chosen or might_split or len(e.lines) == len(order.lines)
            else _partial_rejection(e, order, rules)
            for location_id, e in eligible.items()}


def _evaluate(location: Location, order: Order, address: Address, network: Network,
              rules: RuleSet) -> Candidate | _Eligible:
    def rejected(reason: Rejection, detail: str) -> Candidate:
        return Candidate(location_id=location.location_id, kind=location.kind, rejected=reason, detail=detail)

    if location.location_id in order.exclude:
        return rejected("EXCLUDED", "already failed this order")
    if location.kind == "store" and not location.ships_to_customers:
        return rejected("SHIP_FROM_STORE_DISABLED", "ship-from-store is off at this store")
    if not location.ships_to_customers:
        return rejected("NOT_SHIPPING", "does not ship to customers")
    if address.coordinates is None and not in_zone(location.zones, address):
        return rejected("OUT_OF_ZONE", f"no zone covers {address.country} {address.postal_code}")
    used = network.used_today.get(location.location_id, 0)
    if location.daily_capacity is not None and used >= location.daily_capacity:
        return rejected("FULL", f"daily capacity used: {used} of {location.daily_capacity}")
    servable = frozenset(i for i, line in enumerate(order.lines)
                         if order.may_serve(i, location.location_id)
                         and _line_rejection(location, line, order, rules) is None)
    if not servable:
        reason = _line_rejection(location, order.lines[0], order, rules)
        return rejected(reason, _missing_text(location, order, rules))
    return _Eligible(location, servable, *_scored_terms(location, address, rules))


def _scored_terms(location: Location, address: Address, rules: RuleSet) -> tuple[float | None, Decimal, float, float]:
    """Distance, shipping cost, priority, and the score they make (lower is better)."""
    distance = distance_km(address.coordinates, location.coordinates) if address.coordinates else None
    cost = rules.shipping_cost(location.location_id, location.kind, address.country, address.postal_code)
    priority = rules.priority(location.location_id, location.kind)
    weights = rules.weights
    score = (weights.distance * (distance or 0.0) + weights.cost * float(cost) - weights.priority * priority)
    return distance, cost, priority, round(score, 3)


def _line_rejection(location: Location, line: Line, order: Order, rules: RuleSet) -> Rejection | None:
    if location.kind == "store" and not rules.store_ships(line.sku):
        return "SHIP_FROM_STORE_DISABLED"
    if location.kind == "dropship" and not rules.vendor_carries(location.location_id, line.sku):
        return "NOT_VENDOR_SKU"
    if order.stock.get((location.location_id, line.sku), 0) < line.quantity:
        return "NO_STOCK"
    return None


_LINE_WORDS = {"SHIP_FROM_STORE_DISABLED": "not shipped from stores", "NOT_VENDOR_SKU": "not carried",
               "NO_STOCK": "short"}


def _missing_text(location: Location, order: Order, rules: RuleSet) -> str:
    problems = [(line.sku, _line_rejection(location, line, order, rules)) for line in order.lines]
    return "; ".join(f"{sku} {_LINE_WORDS[reason]}" for sku, reason in problems if reason)


def _partial_rejection(e: _Eligible, order: Order, rules: RuleSet) -> Candidate:
    missing = [line for i, line in enumerate(order.lines) if i not in e.lines]
    return Candidate(location_id=e.location.location_id, kind=e.location.kind,
                     rejected=_line_rejection(e.location, missing[0], order, rules),
                     detail=_missing_text(e.location, order, rules),
                     lines=[order.lines[i].sku for i in sorted(e.lines)], distance_km=_rounded(e.distance_km),
                     shipping_cost=e.shipping_cost, priority=e.priority, score=e.score)


def _scored(e: _Eligible, order: Order, assigned: frozenset[int] | None) -> Candidate:
    return Candidate(location_id=e.location.location_id, kind=e.location.kind, chosen=assigned is not None,
                     lines=[order.lines[i].sku for i in sorted(assigned if assigned is not None else e.lines)],
                     distance_km=_rounded(e.distance_km), shipping_cost=e.shipping_cost, priority=e.priority,
                     score=e.score)


# --- split planning --------------------------------------------------------------------------------------------

def split_limit(order_value: Decimal | None, rules: RuleSet) -> int:
    """How many locations this order may go to: 1 below the minimum order value (or with no value known, when
    the rule set has a minimum)."""
    minimum = rules.split.min_order_value
    if minimum > 0 and (order_value is None or order_value < minimum):
        return 1
    return rules.split.max_nodes


def plan_assignments(line_count: int, servable: dict[str, frozenset[int]], scores: dict[str, float],
                     max_nodes: int) -> list[tuple[str, frozenset[int]]] | None:
    """The locations that serve every line: the fewest (at most `max_nodes`), then the lowest total score. Each
    line goes to the best-scored location of the plan that can serve it. None: no plan within the limit."""
    everything = frozenset(range(line_count))
    ranked = sorted(servable, key=lambda location_id: (scores[location_id], location_id))[:MAX_SPLIT_CANDIDATES]
    for size in range(1, max_nodes + 1):
        plans = [plan for combo in combinations(ranked, size)
                 if (plan := _assign(combo, servable, everything)) is not None]
        if plans:
            return min(plans, key=lambda plan: (sum(scores[location_id] for location_id, _ in plan),
                                                [location_id for location_id, _ in plan]))
    return None


def _assign(combo: tuple[str, ...], servable: dict[str, frozenset[int]],
            everything: frozenset[int]) -> list[tuple[str, frozenset[int]]] | None:
    """`combo` is ranked best first; a plan in which a location would get no line is a smaller plan's."""
    remaining = set(everything)
    plan = []
    for location_id in combo:
        taken = frozenset(remaining & servable[location_id])
        if not taken:
            return None
        plan.append((location_id, taken))
        remaining -= taken
    return plan if not remaining else None


# --- explanation -----------------------------------------------------------------------------------------------

def _details(rules: RuleSet, routed_by: str, candidates: list[Candidate], limit: int = 1) -> RoutingExplanation:
    return RoutingExplanation(rule_set=rules.label, routed_by=routed_by, split_limit=limit, candidates=candidates)


def _routed_text(plan: list[tuple[str, frozenset[int]]], eligible: dict[str, _Eligible], details: RoutingExplanation,
                 routed_by: str, order: Order) -> str:
    def describe(location_id: str) -> str:
        e = eligible[location_id]
        where = f"{e.distance_km:.0f} km" if e.distance_km is not None else "in zone"
        return f"{location_id} ({e.location.kind}, {where}, score {e.score:g})"

    rejected = _rejections_text(details)
    if len(plan) == 1:
        eligible_count = sum(1 for c in details.candidates if c.rejected is None)
        text = f"best of {eligible_count} eligible locations by {routed_by}: {describe(plan[0][0])}"
    else:
        parts = ", ".join(f"{describe(i)} for {', '.join(order.lines[n].sku for n in sorted(lines))}"
                          for i, lines in plan)
        text = f"split over {len(plan)} locations: {parts}"
    return f"{text}{rejected}"


def _no_route_text(details: RoutingExplanation, address: Address) -> str:
    where = "" if address.coordinates else f" delivering to {address.country} {address.postal_code}"
    limit = f" (split limit {details.split_limit})" if details.split_limit > 1 else ""
    return f"no shipping location{where} can serve every line{limit}{_rejections_text(details)}"


def _rejections_text(details: RoutingExplanation) -> str:
    rejected = [f"{c.location_id} {c.rejected}" + (f" ({c.detail})" if c.detail else "")
                for c in details.candidates if c.rejected]
    if len(rejected) > MAX_REJECTIONS_IN_TEXT:
        rejected = [*rejected[:MAX_REJECTIONS_IN_TEXT], f"{len(rejected) - MAX_REJECTIONS_IN_TEXT} more"]
    return f"; rejected: {', '.join(rejected)}" if rejected else ""


def _sorted(locations: dict[str, Location]) -> list[Location]:
    return [locations[location_id] for location_id in sorted(locations)]


def _rounded(value: float | None) -> float | None:
    return round(value, 1) if value is not None else None
