import uuid
from datetime import date

from services.inventory.domain import Inventory, LocationStock, SkuStock, merge_lines
from shared.contracts.common import Assignment, Line
from shared.contracts.inventory import LocationAvailability, ReservationAllocated


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


def test_a_reservation_copy_changes_apart_from_the_original():
    """The store keeps an untouched copy of what it loaded to tell what changed."""
    inv = inventory(AA={"WH1": 5, "WH2": 5})
    order = uuid.uuid4()
    inv.reserve(order, [Line(sku="AA", quantity=4)])
    inv.allocate(order, "WH1", [Assignment(location_id="WH1", lines=[Line(sku="AA", quantity=1)])])
    untouched = inv.reservations[order].copy()
    assert untouched == inv.reservations[order]
    inv.allocate(order, "WH2", [Assignment(location_id="WH2", lines=[Line(sku="AA", quantity=1)])])
    inv.commit(order, [Line(sku="AA", quantity=1)], "WH1")
    assert untouched.pins == {"WH1": [Line(sku="AA", quantity=1)]} and untouched.committed == {}
    assert untouched.lines == [Line(sku="AA", quantity=4)]
    assert untouched != inv.reservations[order]


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
    inventory.release(order)
    reservation = inventory.reservations[order]
    assert (reservation.status, reservation.lines, reservation.committed) == ("committed", [],
                                                                            {"WH": [Line(sku="AB", quantity=1)]})
    stock, network = inventory.locations[("AB", "WH")], inventory.skus["AB"]
    assert (stock.on_hand, stock.allocated, network.on_hand, network.reserved) == (4, 0, 4, 0)


def test_a_late_allocation_of_re_sourced_units_is_undone_by_un_pinning_then_releasing_them():
    """What capture sends when a re-sourced part's allocation never answered and the rest of the order shipped
    (tests/unit/test_saga.py): a release of those lines alone finds nothing held once the late allocation pinned
    them; un-pinned first, they are released."""
    inv, order, one = inventory(AA={"WH1": 5, "WH2": 5, "WH3": 5}), uuid.uuid4(), [Line(sku="AA", quantity=1)]
    inv.reserve(order, [Line(sku="AA", quantity=2)])
    inv.allocate(order, "WH1", [Assignment(location_id="WH1", lines=one), Assignment(location_id="WH2", lines=one)])
    inv.commit(order, one, "WH1")  # one part shipped
    inv.deallocate(order, "WH2")  # the other rejected there, re-sourced
    inv.allocate(order, "WH3", [Assignment(location_id="WH3", lines=one)])  # answered too late
    assert inv.release(order, one) is None  # the release alone: nothing held to release
    assert kind(inv.deallocate(order, "WH3")) == "ReservationDeallocated"
    assert kind(inv.release(order, one)) == "ReservationReleased"
    assert (inv.locations[("AA", "WH3")].allocated, inv.skus["AA"].reserved) == (0, 0)


def waiting_network(on_hand: int = 0) -> Inventory:
    return Inventory(skus={"BK": SkuStock("BK", on_hand, 0)},
                     locations={("BK", "WH"): LocationStock("BK", "WH", on_hand, 0)}, reservations={})


def test_an_order_short_of_stock_waits_only_if_the_channel_lets_it():
    inventory = waiting_network(1)
    refused = inventory.reserve(uuid.uuid4(), [Line(sku="BK", quantity=2)])
    assert refused.message_type.endswith("StockUnavailable.v1")
    waiting = inventory.reserve(uuid.uuid4(), [Line(sku="BK", quantity=2)], backorder_skus=["BK"])
    assert waiting.message_type.endswith("StockBackordered.v1") and waiting.expected_on is None
    assert (inventory.skus["BK"].reserved, inventory.skus["BK"].backordered) == (0, 2)
    assert inventory.network_atp("BK") == 0  # the free unit is promised to the waiting order, not to newcomers


def test_arrivals_serve_waiting_orders_first_come_first_served_and_a_big_one_is_not_overtaken():
    inventory = waiting_network()
    first, second = uuid.uuid4(), uuid.uuid4()
    inventory.reserve(first, [Line(sku="BK", quantity=3)], backorder_skus=["BK"])
    inventory.reserve(second, [Line(sku="BK", quantity=1)], backorder_skus=["BK"])
    inventory.receive("R1", "BK", "WH", 2)
    assert inventory.fill_backorders([first, second]) == []  # 2 units: not enough for the first, kept for it
    inventory.receive("R2", "BK", "WH", 1)
    [served] = inventory.fill_backorders([first, second])
    assert served.order_id == first and inventory.reservations[first].status == "held"
    inventory.receive("R3", "BK", "WH", 1)
    assert [s.order_id for s in inventory.fill_backorders([first, second])] == [second]
    assert (inventory.skus["BK"].reserved, inventory.skus["BK"].backordered) == (4, 0)


def test_a_waiting_order_learns_when_announced_receipts_cover_it_and_a_cancelled_one_leaves_the_queue():
    inventory = waiting_network()
    inventory.expect("PO-1", "BK", 2, date(2027, 1, 10))
    inventory.expect("PO-2", "BK", 5, date(2027, 2, 1))
    first = inventory.reserve(uuid.uuid4(), [Line(sku="BK", quantity=2)], backorder_skus=["BK"])
    second = inventory.reserve(uuid.uuid4(), [Line(sku="BK", quantity=4)], backorder_skus=["BK"])
    third = inventory.reserve(uuid.uuid4(), [Line(sku="BK", quantity=4)], backorder_skus=["BK"])
    assert (first.expected_on, second.expected_on, third.expected_on) == (date(2027, 1, 10), date(2027, 2, 1), None)
    inventory.release(second.order_id)
    assert inventory.skus["BK"].backordered == 6 and inventory.reservations[second.order_id].status == "released"


def split_network() -> Inventory:
    return Inventory(skus={"AA": SkuStock("AA", 4, 0), "BB": SkuStock("BB", 2, 0)},
                     locations={("AA", "WH1"): LocationStock("AA", "WH1", 2, 0),
                                ("AA", "WH2"): LocationStock("AA", "WH2", 2, 0),
                                ("BB", "WH2"): LocationStock("BB", "WH2", 2, 0)}, reservations={})


def test_a_split_pins_each_location_its_lines_all_or_nothing():
    inventory, order = split_network(), uuid.uuid4()
    inventory.reserve(order, [Line(sku="AA", quantity=3), Line(sku="BB", quantity=1)])
    too_much = [Assignment(location_id="WH1", lines=[Line(sku="AA", quantity=1)]),
                Assignment(location_id="WH2", lines=[Line(sku="AA", quantity=2), Line(sku="BB", quantity=2)])]
    assert inventory.allocate(order, "WH1", too_much).reason.code == "RESERVATION_NOT_HELD"
    short = [Assignment(location_id="WH1", lines=[Line(sku="AA", quantity=3)]),
             Assignment(location_id="WH2", lines=[Line(sku="BB", quantity=1)])]
    failed = inventory.allocate(order, "WH1", short)
    assert (failed.location_id, failed.reason.code) == ("WH1", "LOCATION_SHORT")
    assert all(stock.allocated == 0 for stock in inventory.locations.values())  # nothing pinned
    split = [Assignment(location_id="WH1", lines=[Line(sku="AA", quantity=2)]),
             Assignment(location_id="WH2", lines=[Line(sku="AA", quantity=1), Line(sku="BB", quantity=1)])]
    assert isinstance(inventory.allocate(order, "WH1", split), ReservationAllocated)
    assert isinstance(inventory.allocate(order, "WH1", split), ReservationAllocated)  # asked again: same answer
    assert [inventory.locations[k].allocated for k in [("AA", "WH1"), ("AA", "WH2"), ("BB", "WH2")]] == [2, 1, 1]
    shipped = inventory.commit(order, [Line(sku="AA", quantity=2)], "WH1")
    assert (shipped.location_id, shipped.complete) == ("WH1", False)
    assert inventory.commit(order, [Line(sku="BB", quantity=1)], "WH1") is None  # not pinned there
    inventory.commit(order, None, "WH2")
    reservation = inventory.reservations[order]
    assert (reservation.status, reservation.pins) == ("committed", {})
    assert reservation.committed == {"WH1": [Line(sku="AA", quantity=2)],
                                     "WH2": [Line(sku="AA", quantity=1), Line(sku="BB", quantity=1)]}
    assert (inventory.skus["AA"].on_hand, inventory.skus["AA"].reserved) == (1, 0)


def test_a_short_picked_rest_moves_to_another_location_or_only_it_is_released():
    inventory, order = split_network(), uuid.uuid4()
    inventory.reserve(order, [Line(sku="AA", quantity=2)])
    inventory.allocate(order, "WH1")
    inventory.commit(order, [Line(sku="AA", quantity=1)], "WH1")
    moved = inventory.deallocate(order, "WH1")  # the location will not ship the rest
    assert moved.availability == [LocationAvailability(location_id="WH1", sku="AA", available=1),
                                  LocationAvailability(location_id="WH2", sku="AA", available=2)]
    assert inventory.reservations[order].held == [Line(sku="AA", quantity=1)]
    assert inventory.locations[("AA", "WH1")].allocated == 0
    assert inventory.release(order, [Line(sku="AA", quantity=2)]) is None  # more than is held: nothing
    inventory.release(order, [Line(sku="AA", quantity=1)])
    reservation = inventory.reservations[order]
    assert (reservation.status, reservation.lines) == ("committed", [])
    assert (inventory.skus["AA"].on_hand, inventory.skus["AA"].reserved) == (3, 0)


def test_a_release_where_the_lines_were_pinned_finds_them_held_when_their_un_pinning_came_first():
    """The saga gave up on a short-picked rest whose DeallocateReservation was never answered (a broker restart)
    and releases it at its location; the un-pinning, sent before, is applied first."""
    inventory, order = split_network(), uuid.uuid4()
    inventory.reserve(order, [Line(sku="AA", quantity=2)])
    inventory.allocate(order, "WH1")
    inventory.commit(order, [Line(sku="AA", quantity=1)], "WH1")
    inventory.deallocate(order, "WH1")
    released = inventory.release(order, [Line(sku="AA", quantity=1)], "WH1")
    assert kind(released) == "ReservationReleased"
    reservation = inventory.reservations[order]
    assert (reservation.status, reservation.lines) == ("committed", [])
    assert (inventory.skus["AA"].on_hand, inventory.skus["AA"].reserved) == (3, 0)
    assert inventory.release(order, [Line(sku="AA", quantity=1)], "WH2") is None  # held nowhere, pinned nowhere
