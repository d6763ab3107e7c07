import uuid

from services.inventory.domain import Inventory, LocationStock, SkuStock, merge_lines
from shared.contracts.common import Line


def inventory(**stock: dict[str, int]) -> Inventory:
    """inventory(AA={"WH1": 3, "WH2": 2}): SKU AA with 3 units at WH1 and 2 at WH2."""
    return Inventory(
        skus={sku: SkuStock(sku, sum(at.values()), 0) for sku, at in stock.items()},
        locations={(sku, loc): LocationStock(sku, loc, n, 0) for sku, at in stock.items() for loc, n in at.items()},
        reservations={},
    )


def kind(answer) -> str:
    return type(answer).__name__


def test_merge_lines_sums_per_sku_in_lock_order():
    merged = merge_lines([Line(sku="B-1", quantity=1), Line(sku="A-1", quantity=2), Line(sku="B-1", quantity=3)])
    assert merged == [Line(sku="A-1", quantity=2), Line(sku="B-1", quantity=4)]


def test_reserve_holds_network_stock_and_reports_where_it_is():
    inv = inventory(AA={"WH1": 3, "WH2": 2})
    answer = inv.reserve(uuid.uuid4(), [Line(sku="AA", quantity=4)])
    assert kind(answer) == "StockReserved"
    assert inv.skus["AA"].reserved == 4
    assert {(a.location_id, a.available) for a in answer.availability} == {("WH1", 3), ("WH2", 2)}


def test_reserve_is_all_or_nothing_and_names_the_reason():
    inv = inventory(AA={"WH1": 3}, BB={"WH1": 1})
    short = inv.reserve(uuid.uuid4(), [Line(sku="AA", quantity=1), Line(sku="BB", quantity=2)])
    assert (kind(short), short.reason.code) == ("StockUnavailable", "OUT_OF_STOCK")
    unknown = inv.reserve(uuid.uuid4(), [Line(sku="AA", quantity=1), Line(sku="NOPE", quantity=1)])
    assert unknown.reason.code == "UNKNOWN_SKU"
    assert inv.skus["AA"].reserved == 0 and inv.skus["BB"].reserved == 0


def test_allocation_pins_units_at_one_location_or_fails_without_changes():
    inv = inventory(AA={"WH1": 1, "WH2": 5})
    order = uuid.uuid4()
    inv.reserve(order, [Line(sku="AA", quantity=2)])
    assert inv.allocate(order, "WH1").reason.code == "LOCATION_SHORT"
    assert inv.locations[("AA", "WH1")].allocated == 0
    assert kind(inv.allocate(order, "WH2")) == "ReservationAllocated"
    assert kind(inv.allocate(order, "WH2")) == "ReservationAllocated", "a repeat gets the same answer"
    assert inv.locations[("AA", "WH2")].allocated == 2


def test_release_undoes_everything_and_commit_consumes_stock():
    inv = inventory(AA={"WH1": 5})
    released, shipped = uuid.uuid4(), uuid.uuid4()
    for order in (released, shipped):
        inv.reserve(order, [Line(sku="AA", quantity=2)])
        inv.allocate(order, "WH1")
    assert inv.release(released).previous_status == "allocated"
    assert kind(inv.commit(shipped)) == "ReservationCommitted"
    assert (inv.skus["AA"].on_hand, inv.skus["AA"].reserved) == (3, 0)
    assert (inv.locations[("AA", "WH1")].on_hand, inv.locations[("AA", "WH1")].allocated) == (3, 0)
    assert inv.release(shipped) is None, "a shipped reservation cannot be released"


def test_release_before_reserve_leaves_a_tombstone_that_refuses_a_late_reserve():
    inv = inventory(AA={"WH1": 5})
    order = uuid.uuid4()
    assert inv.release(order).previous_status == "none"
    late = inv.reserve(order, [Line(sku="AA", quantity=1)])
    assert late.reason.code == "RESERVATION_CLOSED"
    assert inv.skus["AA"].reserved == 0


def test_deallocation_keeps_the_hold_and_frees_the_location():
    inv = inventory(AA={"WH1": 5, "WH2": 5})
    order = uuid.uuid4()
    inv.reserve(order, [Line(sku="AA", quantity=2)])
    inv.allocate(order, "WH1")
    answer = inv.deallocate(order, "WH1")
    assert kind(answer) == "ReservationDeallocated"
    assert inv.locations[("AA", "WH1")].allocated == 0 and inv.skus["AA"].reserved == 2
    assert inv.reservations[order].status == "held"


def test_a_reservation_is_committed_shipment_by_shipment_and_a_release_after_one_gives_back_only_the_rest():
    inventory = Inventory(skus={"AB": SkuStock("AB", 5, 0)}, locations={("AB", "WH"): LocationStock("AB", "WH", 5, 0)},
                          reservations={})
    order = uuid.uuid4()
    inventory.reserve(order, [Line(sku="AB", quantity=3)])
    inventory.allocate(order, "WH")
    first = inventory.commit(order, [Line(sku="AB", quantity=1)])
    assert (first.lines, first.complete) == ([Line(sku="AB", quantity=1)], False)
    assert inventory.commit(order, [Line(sku="AB", quantity=5)]) is None  # more than is reserved: nothing
    assert inventory.deallocate(order, "WH") is None  # part has shipped from there
    inventory.release(order)
    reservation = inventory.reservations[order]
    assert (reservation.status, reservation.lines, reservation.committed) == ("committed", [],
                                                                            [Line(sku="AB", quantity=1)])
    stock, network = inventory.locations[("AB", "WH")], inventory.skus["AB"]
    assert (stock.on_hand, stock.allocated, network.on_hand, network.reserved) == (4, 0, 4, 0)
