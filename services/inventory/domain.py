"""Reservation rules over an in-memory slice of the inventory: the rows a batch of commands touches, loaded
locked, changed here, written back by the store. Pure: no I/O, so the rules are tested without a database.

Network level: a SKU's `reserved` counts every live reservation, allocated to a location or not. Location level:
`allocated` is what is pinned there. Safety stock is kept back per location (a location's figure, or a SKU's
own there): available to promise (ATP) is on hand - allocated - safety stock at a location, and on hand -
reserved - the safety stock of every location (each at most what is on hand there) for the network.

Every change of a counter is also a ledger entry (sku, location or None for the network, the deltas, its kind
and cause), so the counters always equal the ledger's sums.
"""

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from datetime import date
from uuid import UUID

from shared.contracts import Contract
from shared.contracts.common import Assignment, Line, ReasonCode, merge_lines, subtract_lines
from shared.contracts.inventory import (
    AllocationFailed,
    Atp,
    AvailabilityChanged,
    AvailabilityStatus,
    LocationAtp,
    LocationAvailability,
    ReservationAllocated,
    ReservationCommitted,
    ReservationDeallocated,
    ReservationExpired,
    ReceiptExpected,
    ReservationReleased,
    SafetyStockSet,
    ReservationExtended,
    ReservationExtensionRefused,
    Shortage,
    StockAdjusted,
    StockAdjustmentRefused,
    StockBackordered,
    StockReceived,
    StockReserved,
    StockUnavailable,
)

LIVE = ("held", "allocated")


@dataclass
class SkuStock:
    sku: str
    on_hand: int
    reserved: int
    backordered: int = 0  # what waiting orders (backorders) will take, first come first served, as stock arrives


@dataclass
class LocationStock:
    sku: str
    location_id: str
    on_hand: int
    allocated: int

    safety_stock: int = 0

    @property
    def available(self) -> int:
        return max(self.on_hand - self.allocated - self.safety_stock, 0)

    @property
    def kept_back(self) -> int:
        """The safety stock this location can really keep back: no more than it has."""
        return min(self.safety_stock, self.on_hand)


@dataclass
class Reservation:
    order_id: UUID
    status: str  # held (nothing pinned), allocated (some units pinned), released, committed, expired, backordered
    lines: list[Line]  # what is (or was, once released or expired) reserved and not yet committed
    pins: dict[str, list[Line]] = field(default_factory=dict)  # location -> the units of `lines` pinned there
    correlation_id: str | None = None  # of the order's flow, for what inventory says on its own (expiry)
    committed: dict[str, list[Line]] = field(default_factory=dict)  # location -> what shipped from there

    @property
    def held(self) -> list[Line]:
        """The units reserved and pinned nowhere."""
        return subtract_lines(self.lines, [line for pinned in self.pins.values() for line in pinned]) or []

    def copy(self) -> "Reservation":
        """A copy to change: new lists and maps, the lines themselves (immutable) shared. A deep copy walked every
        line's model: an eighth of inventory's CPU at saturation."""
        return replace(self, lines=list(self.lines), pins={at: list(lines) for at, lines in self.pins.items()},
                       committed={at: list(lines) for at, lines in self.committed.items()})

    def settle(self) -> None:
        """The status the units say: committed once nothing is left, allocated while some are pinned."""
        self.pins = {location: lines for location, lines in self.pins.items() if lines}
        if not self.lines:
            self.status = "committed" if self.committed else "released"
        else:
            self.status = "allocated" if self.pins else "held"


@dataclass(frozen=True)
class LedgerEntry:
    sku: str
    location_id: str | None  # None: the network counters (sku_stock)
    kind: str  # reserve, release, allocate, deallocate, commit, receipt, count, adjustment, expiry
    on_hand: int = 0
    reserved: int = 0  # network entries only
    allocated: int = 0  # location entries only
    cause: str | None = None  # the message id
    order_id: UUID | None = None
    document_id: str | None = None


def availability_status(atp: int, low_stock_threshold: int) -> AvailabilityStatus:
    if atp <= 0:
        return "out_of_stock"
    return "low_stock" if atp <= low_stock_threshold else "in_stock"


@dataclass
class Inventory:
    skus: dict[str, SkuStock]
    locations: dict[tuple[str, str], LocationStock]
    reservations: dict[UUID, Reservation]
    location_safety: dict[str, int] = field(default_factory=dict)  # per location, for every SKU there
    sku_safety: dict[tuple[str, str], int | None] = field(default_factory=dict)  # (sku, location): own figure
    changed_reservations: set[UUID] = field(default_factory=set)
    ledger: list[LedgerEntry] = field(default_factory=list)
    cause: str | None = None  # the message being applied: every ledger entry names it
    low_stock_threshold: int = 0
    reported: dict[str, AvailabilityStatus] = field(default_factory=dict)
    touched: set[str] = field(default_factory=set)  # SKUs whose ATP may have moved since the last report
    expected: dict[str, list[tuple[date, int]]] = field(default_factory=dict)  # announced, not yet received

    def reserve(self, order_id: UUID, lines: list[Line], correlation_id: str | None = None,
                backorder_skus: Iterable[str] = ()) -> Contract:
        """Hold every line against network ATP, or nothing; or, when every short SKU may wait, let the order wait
        (backordered) behind those waiting already. A repeated request gets the same answer."""
        lines = merge_lines(lines)
        existing = self.reservations.get(order_id)
        if existing is not None and existing.status == "backordered":
            return self._backordered(existing)
        if existing is not None and existing.status not in LIVE:
            return StockUnavailable(order_id=order_id, shortages=[],
                                    reason=ReasonCode(code="RESERVATION_CLOSED", detail=existing.status))
        if existing is None:
            shortages = [Shortage(sku=line.sku, requested=line.quantity, available=self.network_atp(line.sku))
                         for line in lines if self.network_atp(line.sku) < line.quantity]
            if shortages:
                unknown = any(line.sku not in self.skus for line in lines)
                if not unknown and {s.sku for s in shortages} <= set(backorder_skus):
                    return self._backordered(self._wait(Reservation(order_id, "backordered", lines,
                                                                    correlation_id=correlation_id)))
                return StockUnavailable(order_id=order_id, shortages=shortages,
                                        reason=ReasonCode(code="UNKNOWN_SKU" if unknown else "OUT_OF_STOCK"))
            for line in lines:
                self._move_network(line.sku, "reserve", reserved=line.quantity, order_id=order_id)
            existing = self._save(Reservation(order_id, "held", lines, correlation_id=correlation_id))
        return StockReserved(order_id=order_id, lines=existing.lines, availability=self.availability(existing.lines))

    def extend(self, order_id: UUID, edit_id: str, lines: list[Line]) -> Contract:
        """An edit adds units to a live reservation: held against network ATP, all or nothing, pinned nowhere."""
        existing = self.reservations.get(order_id)
        ids = {"order_id": order_id, "edit_id": edit_id}
        if existing is None or existing.status not in LIVE:
            return ReservationExtensionRefused(**ids, reason=ReasonCode(
                code="RESERVATION_NOT_HELD", detail=existing.status if existing else "none"))
        lines = merge_lines(lines)
        shortages = [Shortage(sku=line.sku, requested=line.quantity, available=self.network_atp(line.sku))
                     for line in lines if self.network_atp(line.sku) < line.quantity]
        if shortages:
            unknown = any(line.sku not in self.skus for line in lines)
            return ReservationExtensionRefused(**ids, shortages=shortages,
                                               reason=ReasonCode(code="UNKNOWN_SKU" if unknown else "OUT_OF_STOCK"))
        for line in lines:
            self._move_network(line.sku, "reserve", reserved=line.quantity, order_id=order_id)
        existing.lines = merge_lines([*existing.lines, *lines])
        existing.settle()
        self._save(existing)
        return ReservationExtended(**ids, lines=lines)

    def fill_backorders(self, waiting: list[UUID]) -> list[StockReserved]:
        """Hold the waiting orders that arrivals now cover, first come first served: `waiting` in arrival order;
        an order that still cannot be covered keeps its place, and what it needs is not given to those behind."""
        ahead: Counter[str] = Counter()
        served = []
        for order_id in waiting:
            reservation = self.reservations.get(order_id)
            if reservation is None or reservation.status != "backordered":
                continue
            if all(self.network_atp(line.sku, waiting=ahead[line.sku]) >= line.quantity for line in reservation.lines):
                self._leave_queue(reservation, "held")
                for line in reservation.lines:
                    self._move_network(line.sku, "reserve", reserved=line.quantity, order_id=order_id)
                served.append(StockReserved(order_id=order_id, lines=reservation.lines,
                                            availability=self.availability(reservation.lines)))
            else:
                ahead.update({line.sku: line.quantity for line in reservation.lines})
        return served

    def expect(self, receipt_id: str, sku: str, quantity: int, expected_on: date) -> Contract:
        """An announced receipt: waiting orders learn when they may expect their goods."""
        self.skus.setdefault(sku, SkuStock(sku, 0, 0))
        self.expected.setdefault(sku, []).append((expected_on, quantity))
        self.expected[sku].sort()
        return ReceiptExpected(receipt_id=receipt_id, sku=sku, quantity=quantity, expected_on=expected_on)

    def allocate(self, order_id: UUID, location_id: str, assignments: Iterable[Assignment] = ()) -> Contract:
        """Pin held units to locations: each assignment's lines within that location's ATP, all or nothing;
        without assignments, every held unit at `location_id`. Asked again once pinned, the same answer."""
        existing = self.reservations.get(order_id)
        assignments = list(assignments) or [Assignment(location_id=location_id, lines=[])]
        first = assignments[0].location_id
        if existing is not None and existing.status == "allocated" and all(
                a.location_id in existing.pins and subtract_lines(existing.pins[a.location_id], a.lines) is not None
                for a in assignments):
            return ReservationAllocated(order_id=order_id, location_id=first, assignments=assignments)
        if existing is None or existing.status not in LIVE:
            return AllocationFailed(order_id=order_id, location_id=first,
                                    reason=ReasonCode(code="RESERVATION_NOT_HELD",
                                                      detail=existing.status if existing else "none"))
        wanted = [a if a.lines else Assignment(location_id=a.location_id, lines=existing.held) for a in assignments]
        if not existing.held or subtract_lines(existing.held, [line for a in wanted for line in a.lines]) is None:
            return AllocationFailed(order_id=order_id, location_id=first, reason=ReasonCode(
                code="RESERVATION_NOT_HELD", detail="not that much held unpinned"))
        for assignment in wanted:
            stock = [(self.locations.get((line.sku, assignment.location_id)), line) for line in assignment.lines]
            if any(s is None or s.available < line.quantity for s, line in stock):
                return AllocationFailed(order_id=order_id, location_id=assignment.location_id,
                                        reason=ReasonCode(code="LOCATION_SHORT"))
        for assignment in wanted:
            for line in assignment.lines:
                self._move_location(line.sku, assignment.location_id, "allocate", allocated=line.quantity,
                                    order_id=order_id)
            existing.pins[assignment.location_id] = merge_lines(
                [*existing.pins.get(assignment.location_id, []), *assignment.lines])
        existing.settle()
        self._save(existing)
        return ReservationAllocated(order_id=order_id, location_id=first, assignments=assignments)

    def deallocate(self, order_id: UUID, location_id: str) -> Contract | None:
        """Un-pin the units at a location that will not fulfil them (all it was given, or what it did not ship
        of it); the network hold stays, for another location."""
        existing = self.reservations.get(order_id)
        if existing is None or existing.status not in LIVE:
            return None
        if location_id in existing.pins:
            self._unpin(existing, location_id, existing.pins.pop(location_id), "deallocate")
            existing.settle()
            self._save(existing)
        return ReservationDeallocated(order_id=order_id, location_id=location_id,
                                      availability=self.availability(existing.held))

    def release(self, order_id: UUID, lines: list[Line] | None = None,
                location_id: str | None = None) -> Contract | None:
        """Undo the reservation, or only `lines` of it (held ones, or those pinned at `location_id`: held ones when
        they were un-pinned there since). Without a reservation, leave a tombstone so a later ReserveStock is
        refused."""
        existing = self.reservations.get(order_id)
        if existing is not None and existing.status == "committed":
            return None
        previous = existing.status if existing else "none"
        if existing is None:
            self._save(Reservation(order_id, "released", []))
        elif previous == "backordered":
            self._leave_queue(existing, "released")
            return ReservationReleased(order_id=order_id, previous_status="backordered")
        elif previous in LIVE and lines is not None:
            if not self._release_some(existing, merge_lines(lines), location_id):
                return None
        elif previous in LIVE:
            for location, pinned in existing.pins.items():
                self._unpin(existing, location, pinned, "release")
            self._unhold(existing, existing.lines, "release")
            existing.pins, existing.lines = {}, existing.lines if not existing.committed else []
            existing.status = "committed" if existing.committed else "released"  # a partial shipment stays shipped
            self._save(existing)
        return ReservationReleased(order_id=order_id, previous_status=previous if previous in LIVE else "none")

    def _release_some(self, existing: Reservation, lines: list[Line], location_id: str | None) -> bool:
        if location_id and subtract_lines(existing.pins.get(location_id, []), lines) is None:
            location_id = None  # un-pinned there already: a DeallocateReservation sent before overtook the saga's
            # giving up on these lines (it did not see the answer), and they are held, pinned nowhere
        pool = existing.pins.get(location_id, []) if location_id else existing.held
        left = subtract_lines(pool, lines)
        if left is None:
            return False
        if location_id:
            self._unpin(existing, location_id, lines, "release")
            existing.pins[location_id] = left
        self._unhold(existing, lines, "release")
        existing.lines = subtract_lines(existing.lines, lines)
        existing.settle()
        self._save(existing)
        return True

    def expire(self, order_id: UUID) -> Contract | None:
        """A reservation only held for too long gives its units back; allocated ones never expire."""
        existing = self.reservations.get(order_id)
        if existing is None or existing.status != "held":
            return None
        self._unhold(existing, existing.lines, "expiry")
        existing.status = "expired"
        self._save(existing)
        return ReservationExpired(order_id=order_id, lines=existing.lines)

    def commit(self, order_id: UUID, lines: list[Line] | None = None,
               location_id: str | None = None) -> Contract | None:
        """Units shipped from a location: out of its on hand, out of the reservation. A partial shipment commits
        its lines; without lines, all that is pinned there. More than is pinned there commits nothing."""
        existing = self.reservations.get(order_id)
        if existing is None or existing.status != "allocated":
            return None
        location_id = location_id or next(iter(existing.pins))
        pinned = existing.pins.get(location_id, [])
        parcel = merge_lines(lines) if lines else pinned
        left = subtract_lines(pinned, parcel)
        if left is None or not parcel:
            return None
        for line in parcel:
            q = line.quantity
            self._move_location(line.sku, location_id, "commit", on_hand=-q, allocated=-q, order_id=order_id)
            self._move_network(line.sku, "commit", on_hand=-q, reserved=-q, order_id=order_id)
        existing.pins[location_id] = left
        existing.lines = subtract_lines(existing.lines, parcel)
        existing.committed[location_id] = merge_lines([*existing.committed.get(location_id, []), *parcel])
        existing.settle()
        self._save(existing)
        return ReservationCommitted(order_id=order_id, location_id=location_id, lines=parcel,
                                    complete=not existing.lines)

    def receive(self, receipt_id: str, sku: str, location_id: str, quantity: int) -> Contract:
        self._book(sku, location_id, "receipt", quantity, receipt_id)
        return StockReceived(receipt_id=receipt_id, sku=sku, location_id=location_id, quantity=quantity,
                             on_hand=self.locations[(sku, location_id)].on_hand)

    def count(self, document_id: str, sku: str, location_id: str, counted: int) -> Contract:
        """A cycle count: on hand at the location is now `counted`."""
        current = self.locations.get((sku, location_id))
        return self._adjust(document_id, "count", sku, location_id, counted - (current.on_hand if current else 0))

    def adjust(self, document_id: str, sku: str, location_id: str, change: int) -> Contract:
        return self._adjust(document_id, "adjustment", sku, location_id, change)

    def set_safety_stock(self, location_id: str, sku: str | None, quantity: int | None) -> Contract:
        """The location's figure (sku None), or a SKU's own there (quantity None: back to the location's)."""
        if sku is None:
            self.location_safety[location_id] = quantity or 0
        else:
            self.sku_safety[(sku, location_id)] = quantity
        for (stock_sku, stock_location), stock in self.locations.items():
            if stock_location == location_id and sku in (None, stock_sku):
                stock.safety_stock = self.safety_stock(stock_sku, location_id)
                self.touched.add(stock_sku)
        return SafetyStockSet(location_id=location_id, sku=sku, quantity=quantity)

    def safety_stock(self, sku: str, location_id: str) -> int:
        own = self.sku_safety.get((sku, location_id))
        return own if own is not None else self.location_safety.get(location_id, 0)

    def network_atp(self, sku: str, kept_back: int | None = None, waiting: int | None = None) -> int:
        """On hand - reserved - safety stock - what waiting orders (all of them, or those `waiting` ahead) will
        take."""
        stock = self.skus.get(sku)
        if stock is None:
            return 0
        if kept_back is None:
            kept_back = sum(s.kept_back for (s_sku, _), s in self.locations.items() if s_sku == sku)
        waiting = stock.backordered if waiting is None else waiting
        return max(stock.on_hand - stock.reserved - kept_back - waiting, 0)

    def atp(self, sku: str) -> Atp:
        stock = self.skus.get(sku) or SkuStock(sku, 0, 0)
        here = sorted((s for (s_sku, _), s in self.locations.items() if s_sku == sku), key=lambda s: s.location_id)
        return Atp(sku=sku, atp=self.network_atp(sku), on_hand=stock.on_hand, reserved=stock.reserved,
                   safety_stock=sum(s.kept_back for s in here),
                   locations=[LocationAtp(location_id=s.location_id, on_hand=s.on_hand, allocated=s.allocated,
                                          safety_stock=s.safety_stock, atp=s.available) for s in here])

    def availability(self, lines: list[Line]) -> list[LocationAvailability]:
        """Where the SKUs can be promised (ATP net of safety stock), for routing."""
        skus = {line.sku for line in lines}
        return [LocationAvailability(location_id=s.location_id, sku=s.sku, available=s.available)
                for (sku, _), s in sorted(self.locations.items(), key=lambda kv: (kv[0][1], kv[0][0]))
                if sku in skus and s.available > 0]

    def watch_availability(self, low_stock_threshold: int) -> None:
        """Remember each SKU's availability status as loaded: `availability_changes` reports what crossed since."""
        self.low_stock_threshold = low_stock_threshold
        kept_back: Counter[str] = Counter()
        for (sku, _), stock in self.locations.items():
            kept_back[sku] += stock.kept_back
        self.reported = {sku: availability_status(self.network_atp(sku, kept_back[sku]), low_stock_threshold)
                         for sku in self.skus}
        self.touched = set()

    def availability_changes(self) -> list[AvailabilityChanged]:
        changes = []
        touched, self.touched = self.touched, set()
        for sku in sorted(touched):
            atp = self.network_atp(sku)
            status = availability_status(atp, self.low_stock_threshold)
            previous = self.reported.get(sku, "out_of_stock")
            if status != previous:
                changes.append(AvailabilityChanged(sku=sku, status=status, previous_status=previous, atp=atp))
                self.reported[sku] = status
        return changes

    def _adjust(self, document_id: str, kind: str, sku: str, location_id: str, change: int) -> Contract:
        location = self.locations.get((sku, location_id)) or LocationStock(sku, location_id, 0, 0)
        network = self.skus.get(sku) or SkuStock(sku, 0, 0)
        refusal = None
        if location.on_hand + change < 0:
            refusal = ReasonCode(code="NEGATIVE_ON_HAND", detail=f"on hand {location.on_hand}, change {change}")
        elif location.on_hand + change < location.allocated:
            refusal = ReasonCode(code="BELOW_ALLOCATED",
                                 detail=f"on hand {location.on_hand}, change {change}, allocated {location.allocated}")
        elif network.on_hand + change < network.reserved:
            refusal = ReasonCode(code="BELOW_RESERVED",
                                 detail=f"network on hand {network.on_hand}, change {change}, "
                                        f"reserved {network.reserved}")
        if refusal is not None:
            return StockAdjustmentRefused(document_id=document_id, kind=kind, sku=sku, location_id=location_id,
                                          reason=refusal)
        self._book(sku, location_id, kind, change, document_id)
        return StockAdjusted(document_id=document_id, kind=kind, sku=sku, location_id=location_id, change=change,
                             on_hand=self.locations[(sku, location_id)].on_hand)

    def _book(self, sku: str, location_id: str, kind: str, change: int, document_id: str) -> None:
        """Units in or out of a location's on hand, and the network's."""
        if (sku, location_id) not in self.locations:
            self.locations[(sku, location_id)] = LocationStock(sku, location_id, 0, 0,
                                                               self.safety_stock(sku, location_id))
        self.skus.setdefault(sku, SkuStock(sku, 0, 0))
        self._move_location(sku, location_id, kind, on_hand=change, document_id=document_id)
        self._move_network(sku, kind, on_hand=change, document_id=document_id)

    def _unpin(self, reservation: Reservation, location_id: str, lines: list[Line], kind: str) -> None:
        for line in lines:
            self._move_location(line.sku, location_id, kind, allocated=-line.quantity, order_id=reservation.order_id)

    def _unhold(self, reservation: Reservation, lines: list[Line], kind: str) -> None:
        """Take units out of the network hold (those pinned somewhere are un-pinned first, by the caller)."""
        for line in lines:
            self._move_network(line.sku, kind, reserved=-line.quantity, order_id=reservation.order_id)

    def _move_network(self, sku: str, kind: str, *, on_hand: int = 0, reserved: int = 0, **why) -> None:
        stock = self.skus[sku]
        stock.on_hand += on_hand
        stock.reserved += reserved
        self._record(LedgerEntry(sku, None, kind, on_hand=on_hand, reserved=reserved, cause=self.cause, **why))

    def _move_location(self, sku: str, location_id: str, kind: str, *, on_hand: int = 0, allocated: int = 0,
                       **why) -> None:
        stock = self.locations[(sku, location_id)]
        stock.on_hand += on_hand
        stock.allocated += allocated
        self._record(LedgerEntry(sku, location_id, kind, on_hand=on_hand, allocated=allocated, cause=self.cause,
                                 **why))

    def _record(self, entry: LedgerEntry) -> None:
        if entry.on_hand or entry.reserved or entry.allocated:
            self.ledger.append(entry)
            self.touched.add(entry.sku)

    def _wait(self, reservation: Reservation) -> Reservation:
        """Join the queue of orders waiting for stock: what it needs is owed to it before newer orders."""
        self._count_waiting(reservation, +1)
        return self._save(reservation)

    def _leave_queue(self, reservation: Reservation, status: str) -> None:
        self._count_waiting(reservation, -1)
        reservation.status = status
        self._save(reservation)

    def _count_waiting(self, reservation: Reservation, sign: int) -> None:
        for line in reservation.lines:
            self.skus[line.sku].backordered += sign * line.quantity
            self.touched.add(line.sku)

    def _backordered(self, reservation: Reservation) -> StockBackordered:
        """What the waiting order is short of, and when announced receipts cover it (if they do)."""
        shortages = [Shortage(sku=line.sku, requested=line.quantity, available=free)
                     for line in reservation.lines if (free := self.network_atp(line.sku, waiting=0)) < line.quantity]
        dates = [self._covered_on(shortage.sku) for shortage in shortages]
        return StockBackordered(order_id=reservation.order_id, shortages=shortages,
                                expected_on=None if None in dates else max(dates, default=None))

    def _covered_on(self, sku: str) -> date | None:
        """The day announced receipts cover every order waiting for this SKU (this one among them)."""
        missing = self.skus[sku].backordered - self.network_atp(sku, waiting=0)
        for expected_on, quantity in self.expected.get(sku, []):
            missing -= quantity
            if missing <= 0:
                return expected_on
        return None

    def _save(self, reservation: Reservation) -> Reservation:
        self.reservations[reservation.order_id] = reservation
        self.changed_reservations.add(reservation.order_id)
        return reservation
