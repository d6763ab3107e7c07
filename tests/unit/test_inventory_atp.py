"""Safety stock and available to promise, counts and adjustments, expiry, availability events, the ledger."""

import uuid
from collections import Counter

from services.inventory.domain import Inventory, availability_status
from shared.contracts.common import Line


def stocked(*receipts: tuple[str, str, int], safety: dict[str, int] | None = None) -> Inventory:
    """An inventory built the way the service builds it: receipts through the domain."""
    inv = Inventory(skus={}, locations={}, reservations={}, location_safety=dict(safety or {}))
    for i, (sku, location, quantity) in enumerate(receipts):
        inv.receive(f"R{i}", sku, location, quantity)
    return inv


def kind(answer) -> str:
    return type(answer).__name__


def ledger_sums(inv: Inventory) -> dict:
    sums: Counter = Counter()
    for e in inv.ledger:
        sums[(e.sku, e.location_id, "on_hand")] += e.on_hand
        sums[(e.sku, e.location_id, "reserved" if e.location_id is None else "allocated")] += e.reserved + e.allocated
    return {k: v for k, v in sums.items() if v}


def counters(inv: Inventory) -> dict:
    found = {}
    for s in inv.skus.values():
        found[(s.sku, None, "on_hand")], found[(s.sku, None, "reserved")] = s.on_hand, s.reserved
    for s in inv.locations.values():
        found[(s.sku, s.location_id, "on_hand")], found[(s.sku, s.location_id, "allocated")] = s.on_hand, s.allocated
    return {k: v for k, v in found.items() if v}


def test_safety_stock_is_never_promised_at_the_location_or_in_the_network():
    inv = stocked(("AA", "WH1", 5), ("AA", "WH2", 4), safety={"WH1": 2})
    assert inv.network_atp("AA") == 7
    assert {(a.location_id, a.available) for a in inv.availability([Line(sku="AA", quantity=1)])} == {
        ("WH1", 3), ("WH2", 4)}
    short = inv.reserve(uuid.uuid4(), [Line(sku="AA", quantity=8)])
    assert (kind(short), short.reason.code, short.shortages[0].available) == ("StockUnavailable", "OUT_OF_STOCK", 7)
    order = uuid.uuid4()
    assert kind(inv.reserve(order, [Line(sku="AA", quantity=4)])) == "StockReserved"
    assert kind(inv.allocate(order, "WH1")) == "AllocationFailed", "WH1 may promise only 3 of its 5"
    assert kind(inv.allocate(order, "WH2")) == "ReservationAllocated"


def test_a_skus_own_safety_stock_overrides_its_locations_and_can_be_removed():
    inv = stocked(("AA", "WH1", 5), ("BB", "WH1", 5))
    inv.set_safety_stock("WH1", None, 2)
    inv.set_safety_stock("WH1", "AA", 4)
    assert (inv.network_atp("AA"), inv.network_atp("BB")) == (1, 3)
    inv.set_safety_stock("WH1", "AA", None)
    assert inv.network_atp("AA") == 3


def test_a_location_keeps_back_no_more_than_it_has():
    inv = stocked(("AA", "WH1", 1), ("AA", "WH2", 6), safety={"WH1": 5})
    assert inv.network_atp("AA") == 6
    atp = inv.atp("AA")
    assert (atp.atp, atp.safety_stock) == (6, 1)
    assert [(x.location_id, x.atp) for x in atp.locations] == [("WH1", 0), ("WH2", 6)]


def test_a_cycle_count_sets_on_hand_and_an_adjustment_moves_it():
    inv = stocked(("AA", "WH1", 5))
    counted = inv.count("C1", "AA", "WH1", 8)
    assert (kind(counted), counted.change, counted.on_hand) == ("StockAdjusted", 3, 8)
    adjusted = inv.adjust("A1", "AA", "WH1", -2)
    assert (adjusted.kind, adjusted.change, adjusted.on_hand) == ("adjustment", -2, 6)
    assert (inv.skus["AA"].on_hand, inv.locations[("AA", "WH1")].on_hand) == (6, 6)


def test_an_adjustment_below_what_is_allocated_or_reserved_is_refused_with_a_reason():
    inv = stocked(("AA", "WH1", 5), ("AA", "WH2", 5))
    allocated, held = uuid.uuid4(), uuid.uuid4()
    inv.reserve(allocated, [Line(sku="AA", quantity=3)])
    inv.allocate(allocated, "WH1")
    inv.reserve(held, [Line(sku="AA", quantity=6)])
    below_allocated = inv.count("C1", "AA", "WH1", 2)
    assert (kind(below_allocated), below_allocated.reason.code) == ("StockAdjustmentRefused", "BELOW_ALLOCATED")
    below_reserved = inv.adjust("A1", "AA", "WH2", -2)
    assert below_reserved.reason.code == "BELOW_RESERVED"
    assert inv.adjust("A2", "AA", "WH3", -1).reason.code == "NEGATIVE_ON_HAND"
    assert (inv.skus["AA"].on_hand, inv.locations[("AA", "WH1")].on_hand) == (10, 5), "a refusal changes nothing"


def test_only_a_held_reservation_expires_and_it_gives_its_units_back():
    inv = stocked(("AA", "WH1", 5))
    held, allocated = uuid.uuid4(), uuid.uuid4()
    inv.reserve(held, [Line(sku="AA", quantity=2)])
    inv.reserve(allocated, [Line(sku="AA", quantity=1)])
    inv.allocate(allocated, "WH1")
    assert inv.expire(allocated) is None, "an order waiting at its location never expires"
    expired = inv.expire(held)
    assert (kind(expired), expired.lines) == ("ReservationExpired", [Line(sku="AA", quantity=2)])
    assert inv.skus["AA"].reserved == 1
    assert inv.expire(held) is None
    late = inv.reserve(held, [Line(sku="AA", quantity=2)])
    assert (late.reason.code, late.reason.detail) == ("RESERVATION_CLOSED", "expired")


def test_availability_changes_are_reported_when_network_atp_crosses_zero_or_the_threshold():
    inv = stocked(("AA", "WH1", 10))
    inv.watch_availability(low_stock_threshold=3)
    assert inv.availability_changes() == []
    inv.reserve(uuid.uuid4(), [Line(sku="AA", quantity=6)])
    assert inv.availability_changes() == [], "4 left: still above the threshold"
    inv.reserve(uuid.uuid4(), [Line(sku="AA", quantity=2)])
    [low] = inv.availability_changes()
    assert (low.status, low.previous_status, low.atp) == ("low_stock", "in_stock", 2)
    inv.set_safety_stock("WH1", "AA", 2)
    [out] = inv.availability_changes()
    assert (out.status, out.atp) == ("out_of_stock", 0)
    inv.receive("R9", "NEW", "WH1", 1)
    [new] = inv.availability_changes()
    assert (new.sku, new.previous_status, new.status) == ("NEW", "out_of_stock", "low_stock")


def test_availability_status_levels():
    assert [availability_status(atp, 5) for atp in (0, 1, 5, 6)] == ["out_of_stock", "low_stock", "low_stock",
                                                                       "in_stock"]
    assert availability_status(1, 0) == "in_stock"


def test_every_counter_move_is_a_ledger_entry_with_its_cause():
    inv = stocked(("AA", "WH1", 5))
    order = uuid.uuid4()
    inv.cause = "message-1"
    inv.reserve(order, [Line(sku="AA", quantity=2)])
    inv.allocate(order, "WH1")
    inv.commit(order)
    inv.adjust("A1", "AA", "WH1", -1)
    assert ledger_sums(inv) == counters(inv)
    assert [e.kind for e in inv.ledger if e.cause == "message-1"] == ["reserve", "allocate", "commit", "commit",
                                                                        "adjustment", "adjustment"]
    assert {e.order_id for e in inv.ledger if e.kind in ("reserve", "allocate", "commit")} == {order}
    assert {e.document_id for e in inv.ledger if e.kind == "adjustment"} == {"A1"}
