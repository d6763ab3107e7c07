"""What-if replays (services/routing/whatif.py): hand-made requests under two rule sets."""

import re
import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from ops.demo import address
from ops.whatif import Recorded, Report, Window, first_requests, text
from services.routing.domain import Location, Order, distance_km
from services.routing.rules import RuleSet
from services.routing.whatif import Request, replay, summarise, what_if
from shared.contracts.base import Envelope, wrap
from shared.contracts.common import Coordinates, Line, PickupInStore, ShipTo
from shared.contracts.inventory import LocationAvailability
from shared.contracts.routing import RouteOrder

BERLIN = Coordinates(lat=52.52, lon=13.40)
MUNICH = Coordinates(lat=48.14, lon=11.58)
FRANKFURT = Coordinates(lat=50.11, lon=8.68)
LOCATIONS = {
    "WH-BERLIN": Location("WH-BERLIN", "warehouse", BERLIN, True, False),
    "WH-FRANKFURT": Location("WH-FRANKFURT", "warehouse", FRANKFURT, True, False),
    "WH-MUNICH": Location("WH-MUNICH", "warehouse", MUNICH, True, False),
    "ST-MUNICH": Location("ST-MUNICH", "store", MUNICH, True, True),
}
LIVE = RuleSet(format=1, name="live", version=1, weights={"distance": 1.0, "cost": 1.0},
               shipping_costs=[{"node": "WH-MUNICH", "cost": Decimal(250)}, {"node": "store", "cost": Decimal(20)}])
START = datetime(2026, 11, 27, 8, 0, tzinfo=UTC)


def candidate(**changes) -> RuleSet:
    return RuleSet.model_validate({**LIVE.model_dump(), "name": "candidate", "version": 2, **changes})


def stocked(*location_ids: str, sku: str = "SKU-1") -> list[LocationAvailability]:
    return [LocationAvailability(location_id=i, sku=sku, available=100) for i in location_ids]


def request(minute: int, *location_ids: str, city: str = "Munich", sku: str = "SKU-1") -> Request:
    order = Order(ShipTo(address=address(city)), [Line(sku=sku, quantity=1)], stocked(*location_ids, sku=sku),
                  order_value=Decimal(80))
    return Request(uuid.uuid4(), START + timedelta(minutes=minute), order)


def test_doubling_the_cost_weight_moves_orders_to_the_cheaper_node():
    requests = [request(n, "WH-MUNICH", "WH-FRANKFURT") for n in range(3)]
    result = what_if(requests, LOCATIONS, LIVE, candidate(weights={"distance": 1.0, "cost": 2.0}))

    assert [(live.describe(), cand.describe()) for live, cand in result.pairs] == [("WH-MUNICH", "WH-FRANKFURT")] * 3
    assert len(result.changed) == 3
    assert result.live.shipping_cost == Decimal(750) and result.candidate.shipping_cost == 0
    assert result.live.total_distance_km == 0
    assert result.candidate.total_distance_km == pytest.approx(3 * distance_km(MUNICH, FRANKFURT), abs=0.5)
    assert result.candidate.mean_distance_km == pytest.approx(distance_km(MUNICH, FRANKFURT), abs=0.2)
    assert (result.live.rule_set, result.candidate.rule_set) == ("live@v1", "candidate@v2")


def test_disabling_ship_from_store_moves_store_orders_to_warehouses():
    requests = [request(0, "ST-MUNICH", "WH-BERLIN"), request(1, "WH-BERLIN")]
    result = what_if(requests, LOCATIONS, LIVE, candidate(ship_from_store={"disabled_classes": ["standard"]}))

    assert [(live.describe(), cand.describe()) for live, cand in result.pairs] == [
        ("ST-MUNICH", "WH-BERLIN"), ("WH-BERLIN", "WH-BERLIN")]
    assert [live.request for live, _ in result.changed] == [requests[0]]
    assert [(n.location_id, n.peak_day_orders) for n in result.live.capacity] == [("ST-MUNICH", 1), ("WH-BERLIN", 1)]
    assert [(n.location_id, n.peak_day_orders) for n in result.candidate.capacity] == [("WH-BERLIN", 2)]


def test_a_capacity_of_one_sends_later_orders_elsewhere_then_nowhere():
    small = {**LOCATIONS, "WH-MUNICH": Location("WH-MUNICH", "warehouse", MUNICH, True, False, daily_capacity=1),
             "WH-FRANKFURT": Location("WH-FRANKFURT", "warehouse", FRANKFURT, True, False, daily_capacity=1)}
    requests = [request(n, "WH-MUNICH", "WH-FRANKFURT") for n in range(3)]
    outcomes = replay(requests, small, LIVE).outcomes

    assert [o.describe() for o in outcomes] == ["WH-MUNICH", "WH-FRANKFURT", "unfulfillable (NO_LOCATION_WITH_STOCK)"]
    summary = summarise(replay(requests, small, LIVE), small)
    assert (summary.requests, summary.routed, summary.unfulfillable) == (3, 2, {"NO_LOCATION_WITH_STOCK": 1})
    assert [(n.location_id, n.peak_share) for n in summary.capacity] == [("WH-FRANKFURT", 1.0), ("WH-MUNICH", 1.0)]


def test_capacity_used_before_the_window_counts_on_its_day_only():
    small = {**LOCATIONS, "WH-MUNICH": Location("WH-MUNICH", "warehouse", MUNICH, True, False, daily_capacity=2)}
    today, tomorrow = request(0, "WH-MUNICH", "WH-FRANKFURT"), request(24 * 60, "WH-MUNICH", "WH-FRANKFURT")
    result = replay([tomorrow, today], small, LIVE, used_at_start={("WH-MUNICH", START.date()): 2})

    assert [(o.request, o.describe()) for o in result.outcomes] == [(today, "WH-FRANKFURT"), (tomorrow, "WH-MUNICH")]
    [munich] = [n for n in summarise(result, small).capacity if n.location_id == "WH-MUNICH"]
    assert munich.peak_share == 1.0 and munich.daily_capacity == 2


def test_pickups_splits_and_unknown_stores_are_counted_apart():
    splitting = candidate(split={"max_nodes": 2, "min_order_value": Decimal(50)})
    two_lines = Order(ShipTo(address=address("Munich")), [Line(sku="SKU-1", quantity=1), Line(sku="SKU-2", quantity=1)],
                      stocked("WH-MUNICH") + stocked("WH-BERLIN", sku="SKU-2"), order_value=Decimal(80))
    pickup = Order(PickupInStore(store_id="ST-MUNICH"), [Line(sku="SKU-1", quantity=1)], stocked("ST-MUNICH"))
    nowhere = Order(PickupInStore(store_id="ST-NOWHERE"), [Line(sku="SKU-1", quantity=1)], [])
    requests = [Request(uuid.uuid4(), START + timedelta(minutes=n), order)
                for n, order in enumerate((two_lines, pickup, nowhere))]
    result = what_if(requests, LOCATIONS, LIVE, splitting)

    live, split = result.live, result.candidate
    assert (live.routed, live.unfulfillable) == (1, {"NO_LOCATION_WITH_STOCK": 1, "PICKUP_STORE_UNKNOWN": 1})
    assert (split.routed, split.split_orders, split.fulfilment_orders) == (2, 1, 3)
    assert split.unfulfillable == {"PICKUP_STORE_UNKNOWN": 1}
    assert split.total_distance_km == pytest.approx(distance_km(MUNICH, BERLIN), abs=0.2)
    assert split.mean_distance_km == split.total_distance_km  # the pickup has no distance to average in
    assert split.shipping_cost == Decimal(250) + Decimal(0)
    assert [cand.describe() for _, cand in result.changed] == ["WH-MUNICH+WH-BERLIN"]


def test_an_empty_window_reports_nothing_routed():
    result = what_if([], LOCATIONS, LIVE, candidate())
    assert (result.live.requests, result.live.routed, result.live.mean_distance_km, result.pairs) == (0, 0, None, ())


def test_each_order_is_replayed_once_from_its_first_request_that_excludes_nothing():
    first, rerouted = request(0, "WH-MUNICH"), request(1, "WH-BERLIN")
    commands = [_command(first), _command(first), _command(rerouted, exclude=["WH-MUNICH"])]
    requests, repeats = first_requests(commands)
    assert [(r.order_id, r.at) for r in requests] == [(first.order_id, first.at)]
    assert repeats == [first.at, rerouted.at]


def test_the_text_report_puts_both_rule_sets_side_by_side():
    requests = [request(n, "WH-MUNICH", "WH-FRANKFURT") for n in range(2)]
    result = what_if(requests, LOCATIONS, LIVE, candidate(weights={"distance": 1.0, "cost": 2.0}))
    recorded = Recorded({r.order_id: "WH-MUNICH" for r in requests[:1]}, ["live@v1"])
    report = text(Report(Window(requests, 1, START, START + timedelta(hours=1)), {}, result, recorded))

    assert "2 orders requested from 2026-11-27T08:00:00+00:00 to 2026-11-27T09:00:00+00:00 (1 re-routes" in report
    assert re.search(r"orders routed +2 +2\n", report)
    assert re.search(r"total shipping cost +500.00 +0.00\n", report)
    assert re.search(r"  WH-MUNICH +2 \(no limit\) +-\n", report)
    assert f"  {requests[0].order_id}  WH-MUNICH -> WH-FRANKFURT" in report
    assert "decides 1 of 2 orders as routing recorded them (recorded by live@v1)" in report


def _command(req: Request, exclude=()) -> tuple[Envelope, RouteOrder]:
    cmd = RouteOrder(order_id=req.order_id, lines=list(req.order.lines), delivery=req.order.delivery,
                     availability=list(req.order.availability), exclude_locations=list(exclude))
    envelope = wrap(cmd, source="oms/capture", correlation_id=str(req.order_id))
    return envelope.model_copy(update={"time": req.at}), cmd
