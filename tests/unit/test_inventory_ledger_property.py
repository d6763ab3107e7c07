"""Property: whatever interleaving of reserve / allocate (one location or a split) / deallocate / release (all,
or some lines held or pinned somewhere) / commit (all, or a parcel at a location) / receipt / count / adjust /
expire / safety-stock commands the inventory is given, no counter goes negative or past what it bounds,
the network and location counters agree, and the ledger always sums to the counters."""

import uuid
from collections import Counter

from hypothesis import given, settings
from hypothesis import strategies as st

from services.inventory.domain import LIVE, Inventory
from shared.contracts.common import Assignment, Line, merge_lines

SKUS = ("AA", "BB", "CC")
LOCATIONS = ("WH1", "WH2", "ST1")
ORDERS = [uuid.UUID(int=i) for i in range(1, 9)]

sku = st.sampled_from(SKUS)
location = st.sampled_from(LOCATIONS)
order = st.sampled_from(ORDERS)
lines = st.lists(st.builds(Line, sku=sku, quantity=st.integers(1, 6)), min_size=1, max_size=3)
document = st.integers(0, 30).map(lambda n: f"D{n}")

commands = st.one_of(
    st.tuples(st.just("reserve"), order, lines),
    st.tuples(st.just("allocate"), order, location),
    st.tuples(st.just("allocate"), order, location,
              st.lists(st.builds(Assignment, location_id=location, lines=lines), min_size=1, max_size=3)),
    st.tuples(st.just("deallocate"), order, location),
    st.tuples(st.just("release"), order),
    st.tuples(st.just("release"), order, lines, st.none() | location),
    st.tuples(st.just("commit"), order),
    st.tuples(st.just("commit"), order, lines, location),
    st.tuples(st.just("expire"), order),
    st.tuples(st.just("receive"), document, sku, location, st.integers(1, 10)),
    st.tuples(st.just("count"), document, sku, location, st.integers(0, 12)),
    st.tuples(st.just("adjust"), document, sku, location, st.integers(-8, 8)),
    st.tuples(st.just("set_safety_stock"), location, st.none() | sku, st.none() | st.integers(0, 4)),
)


def apply(inventory: Inventory, command: tuple) -> None:
    name, *args = command
    getattr(inventory, name)(*args)


def ledger_sums(inventory: Inventory) -> Counter:
    sums: Counter = Counter()
    for e in inventory.ledger:
        sums[(e.sku, e.location_id, "on_hand")] += e.on_hand
        sums[(e.sku, e.location_id, "held")] += e.reserved + e.allocated
    return +sums


def counters(inventory: Inventory) -> Counter:
    found: Counter = Counter()
    for s in inventory.skus.values():
        found[(s.sku, None, "on_hand")], found[(s.sku, None, "held")] = s.on_hand, s.reserved
    for s in inventory.locations.values():
        found[(s.sku, s.location_id, "on_hand")], found[(s.sku, s.location_id, "held")] = s.on_hand, s.allocated
    return +found


def assert_consistent(inventory: Inventory) -> None:
    for s in inventory.skus.values():
        assert 0 <= s.reserved <= s.on_hand, s
        assert s.on_hand == sum(loc.on_hand for (k, _), loc in inventory.locations.items() if k == s.sku)
        live = sum(line.quantity for r in inventory.reservations.values() if r.status in LIVE
                   for line in r.lines if line.sku == s.sku)
        assert s.reserved == live
    for s in inventory.locations.values():
        assert 0 <= s.allocated <= s.on_hand, s
        pinned = sum(line.quantity for r in inventory.reservations.values() if r.status in LIVE
                     for line in r.pins.get(s.location_id, []) if line.sku == s.sku)
        assert s.allocated == pinned, s
        assert s.available >= 0
    for s in inventory.skus:
        assert inventory.network_atp(s) >= 0
    for r in inventory.reservations.values():
        pinned = [line for lines in r.pins.values() for line in lines]
        assert merge_lines(r.held + pinned) == merge_lines(r.lines), r  # held and pinned make up what is reserved
    assert ledger_sums(inventory) == counters(inventory)


@settings(max_examples=300, deadline=None)
@given(st.lists(commands, max_size=60))
def test_counters_never_go_negative_and_always_equal_the_ledger(stream):
    inventory = Inventory(skus={}, locations={}, reservations={})
    for i, command in enumerate(stream):
        inventory.cause = f"m{i}"
        apply(inventory, command)
        assert_consistent(inventory)


@settings(max_examples=100, deadline=None)
@given(st.lists(st.lists(commands, max_size=15), min_size=2, max_size=5), st.randoms(use_true_random=False))
def test_any_interleaving_of_concurrent_streams_keeps_the_ledger_true(streams, rng):
    """Several writers (channels' orders, the ERP, the expiry task), their commands interleaved at random."""
    inventory = Inventory(skus={}, locations={}, reservations={})
    pending = [list(s) for s in streams]
    while any(pending):
        stream = rng.choice([s for s in pending if s])
        apply(inventory, stream.pop(0))
        assert_consistent(inventory)
