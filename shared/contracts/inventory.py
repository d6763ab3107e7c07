"""Inventory: reservations the saga asks for, stock receipts from ERP/WMS, and their outcomes.

A reservation is made in two steps: `ReserveStock` holds units against the whole network (all-or-nothing over
the order's lines), `AllocateReservation` pins the held units to the location routing chose (a split: each
location its lines, all or none); on an order's first sourcing `ReserveStock` says what routing needs (`route`),
and inventory asks routing (`RouteOrder`) in the transaction that holds the lines. `DeallocateReservation`
un-pins a location's units when it rejects the work, `ReleaseReservation` undoes the reservation (or only some
lines of it), `CommitReservation` consumes the units of a location when they ship. A reservation still only held
(never allocated) after the TTL expires: `ReservationExpired`.

Available to promise (ATP) = on hand - reserved - safety stock, per location and for the network. ERP/ops set
safety stock (`SetSafetyStock`), receive stock (`ReceiveStock`), count it (`RecordCycleCount`) and correct it
(`AdjustStock`); channels learn of a SKU's network ATP crossing zero or the low-stock threshold from
`AvailabilityChanged` on its own topic.
"""

from datetime import date
from decimal import Decimal
from typing import Literal
from uuid import UUID

from pydantic import Field

from .base import NO_CONTROL_CHARACTERS, Contract, contract
from .common import Assignment, Delivery, Line, LocationId, ReasonCode, Sku, Value
from .topics import INVENTORY_AVAILABILITY, INVENTORY_COMMANDS, INVENTORY_EVENTS


class LocationAvailability(Value):
    location_id: LocationId
    sku: Sku
    available: int = Field(ge=0, description="Available to promise here: on hand minus allocated minus safety stock")


class Shortage(Value):
    sku: Sku
    requested: int
    available: int


class OnwardRouting(Value):
    """What routing needs besides the lines and where they are, for inventory to ask it once they are held."""

    delivery: Delivery
    order_value: Decimal | None = Field(None, ge=0, description="Goods value; a split needs it to reach the rule "
                                                                "set's minimum")
    exclude_locations: list[LocationId] = Field(default_factory=list, description="Locations that already failed")


@contract("oms.inventory.ReserveStock.v1", topic=INVENTORY_COMMANDS)
class ReserveStock(Contract):
    """Hold the lines against network ATP. If some are short and every short SKU may wait (`backorder_skus`),
    the order waits instead (StockBackordered) and is served first-come-first-served as stock arrives."""

    order_id: UUID
    lines: list[Line] = Field(min_length=1)
    backorder_skus: list[Sku] = Field(default_factory=list, description="SKUs the channel lets this order wait for")
    route: OnwardRouting | None = Field(None, description="Held now: also ask routing where to send the lines "
                                                          "(RouteOrder, with `allocate`); its answers go to the "
                                                          "asker")


@contract("oms.inventory.AllocateReservation.v1", topic=INVENTORY_COMMANDS)
class AllocateReservation(Contract):
    """Pin held units to locations: `assignments` (a split shipment: each location its lines, all or none), or
    without them every held unit to `location_id`."""

    order_id: UUID
    location_id: LocationId = Field(description="The location, or the first of the assignments")
    assignments: list[Assignment] = Field(default_factory=list, max_length=10)


@contract("oms.inventory.DeallocateReservation.v1", topic=INVENTORY_COMMANDS)
class DeallocateReservation(Contract):
    """Un-pin the units from a location that could not fulfil them; they stay held for the order."""

    order_id: UUID
    location_id: LocationId


@contract("oms.inventory.ReleaseReservation.v1", topic=INVENTORY_COMMANDS)
class ReleaseReservation(Contract):
    """Give the units back: all of the order's, or only `lines` (held ones, or those pinned at `location_id`)."""

    order_id: UUID
    reason: str
    lines: list[Line] | None = Field(None, description="Only these; omitted: everything still reserved")
    location_id: LocationId | None = Field(None, description="With lines: where they are pinned; omitted: held")


@contract("oms.inventory.CommitReservation.v1", topic=INVENTORY_COMMANDS)
class CommitReservation(Contract):
    """Units shipped (or collected): out of on hand and out of the reservation. A partial shipment commits its
    own lines; without lines, everything still reserved."""

    order_id: UUID
    lines: list[Line] | None = Field(None, description="The shipment's lines; omitted: all that is still reserved "
                                                       "at the location")
    location_id: LocationId | None = Field(None, description="Where they shipped from; omitted: the only location "
                                                             "the order is pinned to")


@contract("oms.inventory.ExtendReservation.v1", topic=INVENTORY_COMMANDS)
class ExtendReservation(Contract):
    """An order edit adds units: hold them too (against network ATP, all or nothing), unpinned, for routing.
    The same `edit_id` asked again gets the same answer."""

    order_id: UUID
    edit_id: str = Field(min_length=1, max_length=100)
    lines: list[Line] = Field(min_length=1)


@contract("oms.inventory.ReceiveStock.v1", topic=INVENTORY_COMMANDS)
class ReceiveStock(Contract):
    """Units arrived at a location (goods receipt, return to stock, positive adjustment)."""

    receipt_id: str = Field(min_length=1, max_length=100, description="Idempotency key of the receipt")
    sku: Sku
    location_id: LocationId
    quantity: int = Field(gt=0)

    def key(self) -> str:
        return self.sku


@contract("oms.inventory.ExpectReceipt.v1", topic=INVENTORY_COMMANDS)
class ExpectReceipt(Contract):
    """The ERP announces a receipt (a purchase order from a supplier): orders waiting for the SKU learn when they
    can expect it; the receipt itself comes as ReceiveStock with the same receipt id."""

    receipt_id: str = Field(min_length=1, max_length=100)
    sku: Sku
    location_id: LocationId
    quantity: int = Field(gt=0)
    expected_on: date

    def key(self) -> str:
        return self.sku


@contract("oms.inventory.RecordCycleCount.v1", topic=INVENTORY_COMMANDS)
class RecordCycleCount(Contract):
    """A count at a location: its on hand is now `counted`. Refused if fewer than the units allocated there."""

    document_id: str = Field(min_length=1, max_length=100, description="Idempotency key of the count")
    sku: Sku
    location_id: LocationId
    counted: int = Field(ge=0)

    def key(self) -> str:
        return self.sku


@contract("oms.inventory.AdjustStock.v1", topic=INVENTORY_COMMANDS)
class AdjustStock(Contract):
    """A correction of a location's on hand by `change` units (damage, loss, found). Refused if it would leave
    fewer than the units allocated there."""

    document_id: str = Field(min_length=1, max_length=100, description="Idempotency key of the adjustment")
    sku: Sku
    location_id: LocationId
    change: int = Field(ge=-1_000_000, le=1_000_000)
    reason: str = Field("", max_length=200, pattern=NO_CONTROL_CHARACTERS)

    def key(self) -> str:
        return self.sku


@contract("oms.inventory.SetSafetyStock.v1", topic=INVENTORY_COMMANDS)
class SetSafetyStock(Contract):
    """Units at a location never promised: for every SKU there (`sku` omitted), or for one SKU, overriding the
    location's. `quantity` omitted with a SKU removes that SKU's override."""

    location_id: LocationId
    sku: Sku | None = None
    quantity: int | None = Field(None, ge=0, le=1_000_000)

    def key(self) -> str:
        return self.location_id


@contract("oms.inventory.StockReserved.v1", topic=INVENTORY_EVENTS)
class StockReserved(Contract):
    order_id: UUID
    lines: list[Line]
    availability: list[LocationAvailability] = Field(description="Where the reserved SKUs are, for routing")
    routing_requested: bool = Field(False, description="Inventory has asked routing itself, as ReserveStock's "
                                                       "`route` asked")


@contract("oms.inventory.StockBackordered.v1", topic=INVENTORY_EVENTS)
class StockBackordered(Contract):
    """The order waits for stock (the channel allowed it): nothing is held yet; when arrivals cover it (orders
    waiting longer come first) inventory holds its lines and answers StockReserved."""

    order_id: UUID
    shortages: list[Shortage]
    expected_on: date | None = Field(None, description="When announced receipts (ExpectReceipt) cover it, if they do")


@contract("oms.inventory.ReceiptExpected.v1", topic=INVENTORY_EVENTS)
class ReceiptExpected(Contract):
    receipt_id: str
    sku: Sku
    quantity: int
    expected_on: date

    def key(self) -> str:
        return self.sku


@contract("oms.inventory.StockUnavailable.v1", topic=INVENTORY_EVENTS)
class StockUnavailable(Contract):
    order_id: UUID
    reason: ReasonCode = Field(description="OUT_OF_STOCK or UNKNOWN_SKU")
    shortages: list[Shortage]


@contract("oms.inventory.ReservationAllocated.v1", topic=INVENTORY_EVENTS)
class ReservationAllocated(Contract):
    order_id: UUID
    location_id: LocationId
    assignments: list[Assignment] = Field(default_factory=list, description="As asked: a split's locations")


@contract("oms.inventory.AllocationFailed.v1", topic=INVENTORY_EVENTS)
class AllocationFailed(Contract):
    order_id: UUID
    location_id: LocationId = Field(description="The location that is short (of a split: the first)")
    reason: ReasonCode = Field(description="LOCATION_SHORT or RESERVATION_NOT_HELD")


@contract("oms.inventory.ReservationDeallocated.v1", topic=INVENTORY_EVENTS)
class ReservationDeallocated(Contract):
    order_id: UUID
    location_id: LocationId
    availability: list[LocationAvailability] = Field(description="Where the held SKUs are now, for re-routing")


@contract("oms.inventory.ReservationExtended.v1", topic=INVENTORY_EVENTS)
class ReservationExtended(Contract):
    order_id: UUID
    edit_id: str
    lines: list[Line] = Field(description="The units added to the reservation")


@contract("oms.inventory.ReservationExtensionRefused.v1", topic=INVENTORY_EVENTS)
class ReservationExtensionRefused(Contract):
    order_id: UUID
    edit_id: str
    reason: ReasonCode = Field(description="OUT_OF_STOCK, UNKNOWN_SKU or RESERVATION_NOT_HELD")
    shortages: list[Shortage] = Field(default_factory=list)


@contract("oms.inventory.ReservationReleased.v1", topic=INVENTORY_EVENTS)
class ReservationReleased(Contract):
    order_id: UUID
    previous_status: Literal["held", "allocated", "backordered", "none"]


@contract("oms.inventory.ReservationCommitted.v1", topic=INVENTORY_EVENTS)
class ReservationCommitted(Contract):
    order_id: UUID
    location_id: LocationId
    lines: list[Line] = Field(default_factory=list, description="What this commit took out of stock")
    complete: bool = Field(True, description="Nothing of the reservation is left reserved")


@contract("oms.inventory.StockReceived.v1", topic=INVENTORY_EVENTS)
class StockReceived(Contract):
    receipt_id: str
    sku: Sku
    location_id: LocationId
    quantity: int
    on_hand: int

    def key(self) -> str:
        return self.sku


@contract("oms.inventory.StockAdjusted.v1", topic=INVENTORY_EVENTS)
class StockAdjusted(Contract):
    document_id: str
    kind: Literal["count", "adjustment"]
    sku: Sku
    location_id: LocationId
    change: int
    on_hand: int

    def key(self) -> str:
        return self.sku


@contract("oms.inventory.StockAdjustmentRefused.v1", topic=INVENTORY_EVENTS)
class StockAdjustmentRefused(Contract):
    document_id: str
    kind: Literal["count", "adjustment"]
    sku: Sku
    location_id: LocationId
    reason: ReasonCode = Field(description="BELOW_ALLOCATED (on hand would be less than allocated there), "
                                           "BELOW_RESERVED (network on hand less than reserved) or NEGATIVE_ON_HAND")

    def key(self) -> str:
        return self.sku


@contract("oms.inventory.SafetyStockSet.v1", topic=INVENTORY_EVENTS)
class SafetyStockSet(Contract):
    location_id: LocationId
    sku: Sku | None
    quantity: int | None

    def key(self) -> str:
        return self.location_id


@contract("oms.inventory.ReservationExpired.v1", topic=INVENTORY_EVENTS)
class ReservationExpired(Contract):
    """A reservation held (never allocated) for longer than the TTL was released."""

    order_id: UUID
    lines: list[Line]


AvailabilityStatus = Literal["in_stock", "low_stock", "out_of_stock"]


@contract("oms.inventory.AvailabilityChanged.v1", topic=INVENTORY_AVAILABILITY)
class AvailabilityChanged(Contract):
    """A SKU's network ATP crossed zero or the low-stock threshold."""

    sku: Sku
    status: AvailabilityStatus = Field(description="out_of_stock: ATP 0; low_stock: ATP at or below the threshold")
    previous_status: AvailabilityStatus
    atp: int = Field(ge=0, description="Network available to promise")

    def key(self) -> str:
        return self.sku


class LocationAtp(Value):
    location_id: LocationId
    on_hand: int
    allocated: int
    safety_stock: int
    atp: int = Field(ge=0, description="on hand - allocated - safety stock, at least 0")


class Atp(Value):
    """The answer of `GET /atp/{sku}` on the inventory service."""

    sku: Sku
    atp: int = Field(ge=0, description="Network available to promise: on hand - reserved - safety stock")
    on_hand: int
    reserved: int
    safety_stock: int = Field(description="Units the locations keep back (each at most its on hand)")
    locations: list[LocationAtp]
