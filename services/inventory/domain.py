"""Reservation rules over an in-memory slice of the inventory: the rows a batch of commands touches, loaded
locked, changed here, written back by the store. Pure: no I/O, so the rules are tested without a database.

Network level: a SKU's `reserved` counts every live reservation, allocated to a location or not, so
`on_hand - reserved` is what can still be promised. Location level: `allocated` is what is pinned there.
"""

from collections import Counter
from dataclasses import dataclass, field
from uuid import UUID

from shared.contracts import Contract
from shared.contracts.common import Line, ReasonCode
from shared.contracts.inventory import (
    AllocationFailed,
    LocationAvailability,
    ReservationAllocated,
    ReservationCommitted,
    ReservationDeallocated,
    ReservationReleased,
    Shortage,
    StockReserved,
    StockUnavailable,
)

LIVE = ("held", "allocated")


def merge_lines(lines: list[Line]) -> list[Line]:
    """One line per SKU, sorted by SKU."""
    totals: Counter[str] = Counter()
    for line in lines:
        totals[line.sku] += line.quantity
    return [Line(sku=sku, quantity=qty) for sku, qty in sorted(totals.items())]


@dataclass
class SkuStock:
    sku: str
    on_hand: int
    reserved: int


@dataclass
class LocationStock:
    sku: str
    location_id: str
    on_hand: int
    allocated: int

    @property
    def available(self) -> int:
        return self.on_hand - self.allocated


@dataclass
class Reservation:
    order_id: UUID
    status: str  # held, allocated, released, committed
    lines: list[Line]
    location_id: str | None = None


@dataclass
class Inventory:
    skus: dict[str, SkuStock]
    locations: dict[tuple[str, str], LocationStock]
    reservations: dict[UUID, Reservation]
    changed_reservations: set[UUID] = field(default_factory=set)

    def reserve(self, order_id: UUID, lines: list[Line]) -> Contract:
        """Hold every line against network stock, or nothing. A repeated request gets the same answer."""
        lines = merge_lines(lines)
        existing = self.reservations.get(order_id)
        if existing is not None and existing.status not in LIVE:
            return StockUnavailable(order_id=order_id, shortages=[],
                                    reason=ReasonCode(code="RESERVATION_CLOSED", detail=existing.status))
        if existing is None:
            shortages = [Shortage(sku=line.sku, requested=line.quantity, available=self._promisable(line.sku))
                         for line in lines if self._promisable(line.sku) < line.quantity]
            if shortages:
                unknown = any(line.sku not in self.skus for line in lines)
                return StockUnavailable(order_id=order_id, shortages=shortages,
                                        reason=ReasonCode(code="UNKNOWN_SKU" if unknown else "OUT_OF_STOCK"))
            for line in lines:
                self.skus[line.sku].reserved += line.quantity
            existing = self._save(Reservation(order_id, "held", lines))
        return StockReserved(order_id=order_id, lines=existing.lines, availability=self.availability(existing.lines))

    def allocate(self, order_id: UUID, location_id: str) -> Contract:
        """Pin a held reservation's units to one location, or nothing."""
        existing = self.reservations.get(order_id)
        if existing is not None and existing.status == "allocated" and existing.location_id == location_id:
            return ReservationAllocated(order_id=order_id, location_id=location_id)
        if existing is None or existing.status != "held":
            status = existing.status if existing else "none"
            return AllocationFailed(order_id=order_id, location_id=location_id,
                                    reason=ReasonCode(code="RESERVATION_NOT_HELD", detail=status))
        stock = [self.locations.get((line.sku, location_id)) for line in existing.lines]
        if any(s is None or s.available < line.quantity for s, line in zip(stock, existing.lines, strict=True)):
            return AllocationFailed(order_id=order_id, location_id=location_id, reason=ReasonCode(code="LOCATION_SHORT"))
        for s, line in zip(stock, existing.lines, strict=True):
            s.allocated += line.quantity
        existing.status, existing.location_id = "allocated", location_id
        self._save(existing)
        return ReservationAllocated(order_id=order_id, location_id=location_id)

    def deallocate(self, order_id: UUID, location_id: str) -> Contract | None:
        """Un-pin the units from a location that could not fulfil them; the network hold stays."""
        existing = self.reservations.get(order_id)
        if existing is None or existing.status not in LIVE:
            return None
        if existing.status == "allocated" and existing.location_id == location_id:
            self._unpin(existing)
            existing.status, existing.location_id = "held", None
            self._save(existing)
        return ReservationDeallocated(order_id=order_id, location_id=location_id,
                                      availability=self.availability(existing.lines))

    def release(self, order_id: UUID) -> Contract | None:
        """Undo the reservation. Without one, leave a tombstone so a later ReserveStock is refused."""
        existing = self.reservations.get(order_id)
        if existing is not None and existing.status == "committed":
            return None
        previous = existing.status if existing else "none"
        if existing is None:
            self._save(Reservation(order_id, "released", []))
        elif previous in LIVE:
            if previous == "allocated":
                self._unpin(existing)
            for line in existing.lines:
                self.skus[line.sku].reserved -= line.quantity
            existing.status = "released"
            self._save(existing)
        return ReservationReleased(order_id=order_id, previous_status=previous if previous in LIVE else "none")

    def commit(self, order_id: UUID) -> Contract | None:
        """The units shipped: out of on hand, out of the reservation."""
        existing = self.reservations.get(order_id)
        if existing is None or existing.status != "allocated":
            return None
        for line in existing.lines:
            location = self.locations[(line.sku, existing.location_id)]
            location.on_hand -= line.quantity
            location.allocated -= line.quantity
            self.skus[line.sku].on_hand -= line.quantity
            self.skus[line.sku].reserved -= line.quantity
        existing.status = "committed"
        self._save(existing)
        return ReservationCommitted(order_id=order_id, location_id=existing.location_id)

    def availability(self, lines: list[Line]) -> list[LocationAvailability]:
        skus = {line.sku for line in lines}
        return [LocationAvailability(location_id=s.location_id, sku=s.sku, available=s.available)
                for (sku, _), s in sorted(self.locations.items(), key=lambda kv: (kv[0][1], kv[0][0]))
                if sku in skus and s.available > 0]

    def _promisable(self, sku: str) -> int:
        stock = self.skus.get(sku)
        return stock.on_hand - stock.reserved if stock else 0

    def _unpin(self, reservation: Reservation) -> None:
        for line in reservation.lines:
            self.locations[(line.sku, reservation.location_id)].allocated -= line.quantity

    def _save(self, reservation: Reservation) -> Reservation:
        self.reservations[reservation.order_id] = reservation
        self.changed_reservations.add(reservation.order_id)
        return reservation
