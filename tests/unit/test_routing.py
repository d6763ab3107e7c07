from decimal import Decimal

import pytest

from ops.demo import address
from services.routing.domain import Location, Network, Order, choose, distance_km, plan_assignments, split_limit
from services.routing.rules import DEFAULT_RULES, RuleSet, RuleSetError, load_rule_set
from shared.contracts.common import Address, Coordinates, Line, PickupInStore, ShipTo
from shared.contracts.inventory import LocationAvailability
from shared.contracts.routing import Zone

BERLIN = Coordinates(lat=52.52, lon=13.40)
MUNICH = Coordinates(lat=48.14, lon=11.58)
FRANKFURT = Coordinates(lat=50.11, lon=8.68)
LOCATIONS = {
    "WH-BERLIN": Location("WH-BERLIN", "warehouse", BERLIN, True, False),
    "WH-MUNICH": Location("WH-MUNICH", "warehouse", MUNICH, True, False),
    "ST-MUNICH": Location("ST-MUNICH", "store", MUNICH, False, True),
}
LINES = [Line(sku="SKU-1", quantity=2), Line(sku="SKU-2", quantity=1)]
RULES = RuleSet(format=1, name="test", version=3, weights={"distance": 1.0, "cost": 2.0, "priority": 10.0},
                default_shipping_cost=Decimal(5), shipping_costs=[{"node": "store", "cost": Decimal("6.5")}],
                node_priority={"warehouse": 1.0}, sku_classes=[{"name": "bulky", "prefixes": ["BULKY-"]}],
                ship_from_store={"disabled_classes": ["bulky"]}, vendors={"DS-1": ["VEND-"]})


def changed(rules: RuleSet, **changes) -> RuleSet:
    return RuleSet.model_validate({**rules.model_dump(), **changes})


SPLITTING = changed(RULES, split={"max_nodes": 3, "min_order_value": Decimal(50)})


def stock(location: str, **skus: int) -> list[LocationAvailability]:
    return [LocationAvailability(location_id=location, sku=sku.replace("_", "-"), available=n)
            for sku, n in skus.items()]


def ship(city: str = "Munich", lines=LINES, availability=(), **kwargs) -> Order:
    return Order(ShipTo(address=address(city)), lines, list(availability), **kwargs)


def decide(order: Order, locations=LOCATIONS, rules=RULES, used=None):
    return choose(order, Network(locations, used or {}), rules)


def verdict(decision, location_id: str):
    [candidate] = [c for c in decision.details.candidates if c.location_id == location_id]
    return candidate


def test_distance_berlin_munich_is_about_500_km():
    assert 490 < distance_km(BERLIN, MUNICH) < 510


def test_picks_the_nearest_location_that_has_every_line_and_explains_the_scores():
    availability = stock("WH-BERLIN", SKU_1=5, SKU_2=5) + stock("WH-MUNICH", SKU_1=5, SKU_2=5)
    decision = decide(ship("Munich", availability=availability))
    assert decision.location_id == "WH-MUNICH"
    assert [(a.location_id, a.lines) for a in decision.assignments] == [("WH-MUNICH", LINES)]
    chosen, other = verdict(decision, "WH-MUNICH"), verdict(decision, "WH-BERLIN")
    assert chosen.chosen and not other.chosen and other.rejected is None
    assert chosen.score == pytest.approx(0 + 2 * 5 - 10 * 1.0)
    assert other.score > chosen.score and 490 < other.distance_km < 510
    assert decision.details.rule_set == "test@v3" and decision.details.routed_by == "distance"
    assert "WH-MUNICH" in decision.explanation


def test_skips_locations_missing_a_line_and_excluded_ones_with_their_reasons():
    availability = stock("WH-BERLIN", SKU_1=5, SKU_2=5) + stock("WH-MUNICH", SKU_1=5)
    decision = decide(ship(availability=availability))
    assert decision.location_id == "WH-BERLIN"
    assert (verdict(decision, "WH-MUNICH").rejected, verdict(decision, "WH-MUNICH").detail) == ("NO_STOCK",
                                                                                               "SKU-2 short")
    excluded = decide(ship(availability=availability, exclude=frozenset({"WH-BERLIN"})))
    assert excluded.location_id is None and excluded.reason_code == "NO_LOCATION_WITH_STOCK"
    assert verdict(excluded, "WH-BERLIN").rejected == "EXCLUDED"
    assert "WH-BERLIN EXCLUDED" in excluded.explanation


def test_weights_and_costs_come_from_the_rule_set():
    availability = stock("WH-BERLIN", SKU_1=5, SKU_2=5) + stock("WH-MUNICH", SKU_1=5, SKU_2=5)
    expensive_munich = changed(RULES, shipping_costs=[{"node": "WH-MUNICH", "cost": Decimal(1000)}])
    assert decide(ship("Munich", availability=availability), rules=expensive_munich).location_id == "WH-BERLIN"


# --- kinds ------------------------------------------------------------------------------------------------------

STORES = {
    "WH-BERLIN": Location("WH-BERLIN", "warehouse", BERLIN, True, False),
    "ST-SHIPS": Location("ST-SHIPS", "store", MUNICH, True, True),
    "ST-NOSHIP": Location("ST-NOSHIP", "store", MUNICH, False, True),
}


def test_a_store_that_ships_is_chosen_when_nearest():
    availability = stock("WH-BERLIN", SKU_1=5, SKU_2=5) + stock("ST-SHIPS", SKU_1=5, SKU_2=5)
    assert decide(ship("Munich", availability=availability), STORES).location_id == "ST-SHIPS"


def test_a_store_with_ship_from_store_off_is_rejected_as_such():
    availability = stock("WH-BERLIN", SKU_1=5, SKU_2=5) + stock("ST-NOSHIP", SKU_1=5, SKU_2=5)
    decision = decide(ship("Munich", availability=availability), STORES)
    assert decision.location_id == "WH-BERLIN"
    assert verdict(decision, "ST-NOSHIP").rejected == "SHIP_FROM_STORE_DISABLED"


def test_stores_do_not_ship_a_disabled_sku_class():
    lines = [Line(sku="BULKY-SOFA", quantity=1)]
    availability = stock("WH-BERLIN", BULKY_SOFA=1) + stock("ST-SHIPS", BULKY_SOFA=1)
    decision = decide(ship("Munich", lines, availability), STORES)
    assert decision.location_id == "WH-BERLIN"
    assert verdict(decision, "ST-SHIPS").rejected == "SHIP_FROM_STORE_DISABLED"
    assert RULES.sku_class("BULKY-SOFA") == "bulky" and RULES.sku_class("SKU-1") == "standard"


def test_dropship_vendors_serve_only_their_skus():
    vendors = {"DS-1": Location("DS-1", "dropship", MUNICH, True, False),
               "WH-BERLIN": Location("WH-BERLIN", "warehouse", BERLIN, True, False)}
    vendor_line = [Line(sku="VEND-42", quantity=1)]
    decision = decide(ship("Munich", vendor_line, stock("DS-1", VEND_42=9) + stock("WH-BERLIN", VEND_42=9)), vendors)
    assert decision.location_id == "DS-1"
    assert [a.location_kind for a in decision.assignments] == ["dropship"], "the plan says what the location is"
    other = decide(ship("Munich", LINES, stock("DS-1", SKU_1=9, SKU_2=9) + stock("WH-BERLIN", SKU_1=9, SKU_2=9)),
                   vendors)
    assert other.location_id == "WH-BERLIN"
    assert verdict(other, "DS-1").rejected == "NOT_VENDOR_SKU"


def test_a_vendor_absent_from_the_rule_set_carries_nothing():
    unknown = {"DS-2": Location("DS-2", "dropship", MUNICH, True, False)}
    decision = decide(ship("Munich", [Line(sku="VEND-1", quantity=1)], stock("DS-2", VEND_1=5)), unknown)
    assert decision.reason_code == "NO_LOCATION_WITH_STOCK"
    assert verdict(decision, "DS-2").rejected == "NOT_VENDOR_SKU"


def test_a_warehouse_that_does_not_ship_is_not_a_candidate():
    closed = {"WH-X": Location("WH-X", "warehouse", MUNICH, False, False)}
    decision = decide(ship(availability=stock("WH-X", SKU_1=5, SKU_2=5)), closed)
    assert verdict(decision, "WH-X").rejected == "NOT_SHIPPING"


def test_pickup_goes_to_the_pickup_store_only():
    availability = stock("ST-MUNICH", SKU_1=5, SKU_2=5) + stock("WH-MUNICH", SKU_1=9, SKU_2=9)
    pickup = decide(Order(PickupInStore(store_id="ST-MUNICH"), LINES, availability))
    assert pickup.location_id == "ST-MUNICH"
    assert [a.location_kind for a in pickup.assignments] == ["store"]
    assert verdict(pickup, "WH-MUNICH").rejected == "NOT_PICKUP_STORE" and pickup.details.routed_by == "pickup"
    short = decide(Order(PickupInStore(store_id="ST-MUNICH"), LINES, stock("ST-MUNICH", SKU_1=1)))
    assert short.reason_code == "PICKUP_STORE_NO_STOCK"
    assert verdict(short, "ST-MUNICH").rejected == "NO_STOCK"
    unknown = decide(Order(PickupInStore(store_id="WH-MUNICH"), LINES, availability))
    assert unknown.reason_code == "PICKUP_STORE_UNKNOWN"


# --- capacity ---------------------------------------------------------------------------------------------------

def test_a_full_location_is_skipped_for_the_next_best():
    locations = {**LOCATIONS, "WH-MUNICH": Location("WH-MUNICH", "warehouse", MUNICH, True, False, daily_capacity=2)}
    availability = stock("WH-BERLIN", SKU_1=5, SKU_2=5) + stock("WH-MUNICH", SKU_1=5, SKU_2=5)
    assert decide(ship(availability=availability), locations, used={"WH-MUNICH": 1}).location_id == "WH-MUNICH"
    full = decide(ship(availability=availability), locations, used={"WH-MUNICH": 2})
    assert full.location_id == "WH-BERLIN"
    assert (verdict(full, "WH-MUNICH").rejected, verdict(full, "WH-MUNICH").detail) == (
        "FULL", "daily capacity used: 2 of 2")


def test_a_location_without_capacity_limit_is_never_full():
    availability = stock("WH-MUNICH", SKU_1=5, SKU_2=5)
    assert decide(ship(availability=availability), used={"WH-MUNICH": 10_000}).location_id == "WH-MUNICH"


# --- zones ------------------------------------------------------------------------------------------------------

def no_coordinates(country: str, postal_code: str) -> Address:
    return Address(name="A", line1="Street 1", city="Somewhere", postal_code=postal_code, country=country)


ZONED = {
    "WH-SOUTH": Location("WH-SOUTH", "warehouse", MUNICH, True, False,
                         zones=(Zone(country="DE", postal_prefixes=["8", "9"]),)),
    "WH-NORTH": Location("WH-NORTH", "warehouse", BERLIN, True, False,
                         zones=(Zone(country="DE", postal_prefixes=["1", "2"]),)),
    "WH-AT": Location("WH-AT", "warehouse", MUNICH, True, False, zones=(Zone(country="AT"),)),
    "WH-NONE": Location("WH-NONE", "warehouse", FRANKFURT, True, False),
}
ZONED_STOCK = [a for loc in ZONED for a in stock(loc, SKU_1=5, SKU_2=5)]


@pytest.mark.parametrize(("country", "postal_code", "expected"),
                         [("DE", "80331", "WH-SOUTH"), ("DE", "10115", "WH-NORTH"), ("AT", "1010", "WH-AT")])
def test_an_address_without_coordinates_goes_by_zone(country, postal_code, expected):
    order = Order(ShipTo(address=no_coordinates(country, postal_code)), LINES, ZONED_STOCK)
    decision = decide(order, ZONED)
    assert decision.location_id == expected and decision.details.routed_by == "zone"
    assert verdict(decision, "WH-NONE").rejected == "OUT_OF_ZONE"
    assert decision.distance_km is None


def test_no_zone_covering_the_address_means_no_route():
    decision = decide(Order(ShipTo(address=no_coordinates("DE", "50667")), LINES, ZONED_STOCK), ZONED)
    assert decision.reason_code == "NO_LOCATION_WITH_STOCK"
    assert {c.rejected for c in decision.details.candidates} == {"OUT_OF_ZONE"}
    assert "DE 50667" in decision.explanation


def test_zones_are_ignored_when_the_address_has_coordinates():
    assert decide(ship("Frankfurt", availability=ZONED_STOCK), ZONED).location_id == "WH-NONE"


# --- splits -----------------------------------------------------------------------------------------------------

def test_split_planning_prefers_fewest_locations_then_score():
    servable = {"A": frozenset({0}), "B": frozenset({1}), "C": frozenset({0, 1}), "D": frozenset({2})}
    scores = {"A": 1.0, "B": 1.0, "C": 50.0, "D": 7.0}
    assert plan_assignments(3, servable, scores, 3) == [("D", frozenset({2})), ("C", frozenset({0, 1}))], \
        "two locations beat three cheaper ones; the plan lists them best-scored first"
    assert plan_assignments(2, servable, scores, 1) == [("C", frozenset({0, 1}))]
    assert plan_assignments(2, servable, {**scores, "C": 3.0}, 2) == [("C", frozenset({0, 1}))]


def test_split_planning_picks_the_cheapest_plan_of_the_smallest_size():
    servable = {"A": frozenset({0}), "B": frozenset({1}), "A2": frozenset({0}), "B2": frozenset({1})}
    scores = {"A": 5.0, "B": 1.0, "A2": 2.0, "B2": 9.0}
    assert plan_assignments(2, servable, scores, 2) == [("B", frozenset({1})), ("A2", frozenset({0}))]


def test_split_planning_respects_the_limit():
    servable = {"A": frozenset({0}), "B": frozenset({1}), "C": frozenset({2})}
    scores = dict.fromkeys(servable, 1.0)
    assert plan_assignments(3, servable, scores, 2) is None
    assert len(plan_assignments(3, servable, scores, 3)) == 3
    assert plan_assignments(1, {}, {}, 3) is None


def test_a_line_goes_to_the_best_location_of_the_plan_that_has_it():
    servable = {"A": frozenset({0, 1}), "B": frozenset({1, 2})}
    plan = plan_assignments(3, servable, {"A": 2.0, "B": 1.0}, 2)
    assert plan == [("B", frozenset({1, 2})), ("A", frozenset({0}))]


@pytest.mark.parametrize(("value", "limit"), [(None, 1), (Decimal("49.99"), 1), (Decimal(50), 3), (Decimal(500), 3)])
def test_no_split_below_the_minimum_order_value(value, limit):
    assert split_limit(value, SPLITTING) == limit


def test_no_minimum_means_any_order_may_split():
    rules = changed(SPLITTING, split={"max_nodes": 3, "min_order_value": 0})
    assert split_limit(None, rules) == 3


def test_an_order_no_single_location_serves_is_split_and_explained():
    availability = stock("WH-BERLIN", SKU_1=5) + stock("WH-MUNICH", SKU_2=5)
    decision = decide(ship("Munich", availability=availability, order_value=Decimal(100)), rules=SPLITTING)
    assert [(a.location_id, [line.sku for line in a.lines]) for a in decision.assignments] == [
        ("WH-MUNICH", ["SKU-2"]), ("WH-BERLIN", ["SKU-1"])]
    assert decision.location_id == "WH-MUNICH" and decision.details.split_limit == 3
    assert all(c.chosen for c in decision.details.candidates if c.location_id.startswith("WH"))
    assert decision.explanation.startswith("split over 2 locations")


def test_a_small_order_is_not_split():
    availability = stock("WH-BERLIN", SKU_1=5) + stock("WH-MUNICH", SKU_2=5)
    decision = decide(ship("Munich", availability=availability, order_value=Decimal(10)), rules=SPLITTING)
    assert decision.reason_code == "NO_LOCATION_WITH_STOCK" and decision.details.split_limit == 1
    assert verdict(decision, "WH-BERLIN").rejected == "NO_STOCK"


# --- the rule set as configuration ------------------------------------------------------------------------------

def test_the_default_rule_file_is_valid_and_splits_over_two_locations_at_most():
    rules = load_rule_set(DEFAULT_RULES)
    assert rules.split.max_nodes == 2
    assert rules.label == "default@v1"


@pytest.mark.parametrize(("text", "problem"), [
    ("format = 1\nname = 'x'\nversion = 1\n[split]\nmax_nodes = 0\n", "split.max_nodes"),
    ("format = 2\nname = 'x'\nversion = 1\n", "format"),
    ("format = 1\nname = 'x'\nversion = 1\n[ship_from_store]\ndisabled_classes = ['nope']\n", "undeclared SKU classes"),
    ("format = 1\nname = 'x'\nversion = 1\nsurprise = true\n", "surprise"),
    ("format = 1\nname = \n", "not valid TOML"),
    ("format = 1\nname = 'x'\nversion = 1\n[weights]\ndistance = inf\n", "weights.distance"),
    ("format = 1\nname = 'x'\nversion = 1\n[node_priority]\nstore = nan\n", "node_priority.store"),
])
def test_an_invalid_rule_file_is_refused_with_the_reason(tmp_path, text, problem):
    path = tmp_path / "rules.toml"
    path.write_text(text)
    with pytest.raises(RuleSetError, match=problem) as error:
        load_rule_set(path)
    assert str(path) in str(error.value)


def test_shipping_cost_takes_the_most_specific_entry():
    rules = changed(RULES, shipping_costs=[
        {"node": "*", "cost": Decimal(1)}, {"node": "store", "cost": Decimal(2)},
        {"node": "ST-1", "country": "DE", "cost": Decimal(3)},
        {"node": "ST-1", "country": "DE", "postal_prefix": "80", "cost": Decimal(4)}])
    assert rules.shipping_cost("WH-1", "warehouse", "DE", "10115") == 1
    assert rules.shipping_cost("ST-2", "store", "DE", "10115") == 2
    assert rules.shipping_cost("ST-1", "store", "DE", "10115") == 3
    assert rules.shipping_cost("ST-1", "store", "DE", "80331") == 4
    assert rules.shipping_cost("ST-1", "store", "AT", "80331") == 2


def test_a_dropship_vendor_that_does_not_ship_is_not_a_candidate():
    vendor = {"DS-1": Location("DS-1", "dropship", MUNICH, False, False)}
    decision = decide(ship("Munich", [Line(sku="VEND-1", quantity=1)], stock("DS-1", VEND_1=5)), vendor)
    assert verdict(decision, "DS-1").rejected == "NOT_SHIPPING"


def test_when_no_split_plan_fits_every_partial_location_says_what_it_lacks():
    lines = [Line(sku="SKU-1", quantity=1), Line(sku="SKU-2", quantity=1), Line(sku="SKU-3", quantity=1)]
    availability = stock("WH-BERLIN", SKU_1=5) + stock("WH-MUNICH", SKU_2=5)
    decision = decide(ship("Munich", lines, availability, order_value=Decimal(100)), rules=SPLITTING)
    assert decision.reason_code == "NO_LOCATION_WITH_STOCK"
    assert {c.location_id: c.rejected for c in decision.details.candidates} == {
        "WH-BERLIN": "NO_STOCK", "WH-MUNICH": "NO_STOCK", "ST-MUNICH": "SHIP_FROM_STORE_DISABLED"}
    assert verdict(decision, "WH-BERLIN").detail == "SKU-2 short; SKU-3 short"


def test_a_location_left_out_of_a_split_keeps_its_score():
    lines = [Line(sku="SKU-1", quantity=1), Line(sku="SKU-2", quantity=1)]
    locations = {**LOCATIONS, "WH-FAR": Location("WH-FAR", "warehouse", Coordinates(lat=53.55, lon=9.99), True, False)}
    availability = stock("WH-BERLIN", SKU_1=5) + stock("WH-MUNICH", SKU_2=5) + stock("WH-FAR", SKU_1=5)
    decision = decide(ship("Munich", lines, availability, order_value=Decimal(100)), locations, SPLITTING)
    assert [a.location_id for a in decision.assignments] == ["WH-MUNICH", "WH-BERLIN"]
    far = verdict(decision, "WH-FAR")
    assert (far.chosen, far.rejected) == (False, None) and far.score > verdict(decision, "WH-BERLIN").score


def test_the_words_name_at_most_ten_rejections_and_the_details_all_of_them():
    many = {f"WH-{n:02d}": Location(f"WH-{n:02d}", "warehouse", MUNICH, True, False) for n in range(15)}
    decision = decide(ship(availability=[a for loc in many for a in stock(loc, SKU_1=9)]), many)
    assert len(decision.details.candidates) == 15
    assert decision.explanation.count("NO_STOCK") == 10 and decision.explanation.endswith("5 more")


def test_a_line_no_location_has_in_full_is_divided_among_those_that_have_it():
    """The network sums SKU-1 to 4 for the customer; no location has 3: the line is shared out, not refused and
    not reserved all at the first location."""
    availability = stock("WH-BERLIN", SKU_1=2) + stock("WH-MUNICH", SKU_1=2) + stock("ST-MUNICH", SKU_1=9)
    order = ship("Munich", lines=[Line(sku="SKU-1", quantity=3)], availability=availability,
                 order_value=Decimal(100))
    decision = decide(order, rules=SPLITTING)
    assert sorted((a.location_id, a.lines) for a in decision.assignments) == [
        ("WH-BERLIN", [Line(sku="SKU-1", quantity=1)]), ("WH-MUNICH", [Line(sku="SKU-1", quantity=2)])]
    assert sum(line.quantity for a in decision.assignments for line in a.lines) == 3
    assert decide(order, rules=RULES).reason_code == "NO_LOCATION_WITH_STOCK"  # no split allowed: refused whole
    short = ship("Munich", lines=[Line(sku="SKU-1", quantity=5)], availability=availability, order_value=Decimal(100))
    assert decide(short, rules=SPLITTING).reason_code == "NO_LOCATION_WITH_STOCK"  # the shipping ones have 4
