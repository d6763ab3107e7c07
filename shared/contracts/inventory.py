"""Inventory: reservations the saga asks for, stock receipts from ERP/WMS, and their outcomes.

A reservation is made in two steps: `ReserveStock` holds units against the whole network (all-or-nothing over
the order's lines), `AllocateReservation` pins the held units to the location routing chose.
`DeallocateReservation` un-pins them when that location rejects the work, `ReleaseReservation` undoes the
reservation, `CommitReservation` consumes the units when they ship.
"""

from typing import Literal
from uuid import UUID

from pydantic import Field

from .base import Contract, contract
from .common import Line, LocationId, ReasonCode, Sku, Value
from .topics import INVENTORY_COMMANDS, INVENTORY_EVENTS


class LocationAvailability(Value):
    location_id: LocationId
    sku: Sku
    available: int = Field(ge=0, description="On hand minus allocated at this location")


class Shortage(Value):
    sku: Sku
    requested: int
    available: int


@contract("oms.inventory.ReserveStock.v1", topic=INVENTORY_COMMANDS)
class ReserveStock(Contract):
    order_id: UUID
    lines: list[Line] = Field(min_length=1)


@contract("oms.inventory.AllocateReservation.v1", topic=INVENTORY_COMMANDS)
class AllocateReservation(Contract):
    order_id: UUID
    location_id: LocationId


@contract("oms.inventory.DeallocateReservation.v1", topic=INVENTORY_COMMANDS)
class DeallocateReservation(Contract):
    """Un-pin the units from a location that could not fulfil them; they stay held for the order."""

    order_id: UUID
    location_id: LocationId


@contract("oms.inventory.ReleaseReservation.v1", topic=INVENTORY_COMMANDS)
class ReleaseReservation(Contract):
    order_id: UUID
    reason: str


@contract("oms.inventory.CommitReservation.v1", topic=INVENTORY_COMMANDS)
class CommitReservation(Contract):
    order_id: UUID


@contract("oms.inventory.ReceiveStock.v1", topic=INVENTORY_COMMANDS)
class ReceiveStock(Contract):
    """Units arrived at a location (goods receipt, return to stock, positive adjustment)."""

    receipt_id: str = Field(min_length=1, max_length=100, description="Idempotency key of the receipt")
    sku: Sku
    location_id: LocationId
    quantity: int = Field(gt=0)

    def key(self) -> str:
        return self.sku


@contract("oms.inventory.StockReserved.v1", topic=INVENTORY_EVENTS)
class StockReserved(Contract):
    order_id: UUID
    lines: list[Line]
    availability: list[LocationAvailability] = Field(description="Where the reserved SKUs are, for routing")


@contract("oms.inventory.StockUnavailable.v1", topic=INVENTORY_EVENTS)
class StockUnavailable(Contract):
    order_id: UUID
    reason: ReasonCode = Field(description="OUT_OF_STOCK or UNKNOWN_SKU")
    shortages: list[Shortage]


@contract("oms.inventory.ReservationAllocated.v1", topic=INVENTORY_EVENTS)
class ReservationAllocated(Contract):
    order_id: UUID
    location_id: LocationId


@contract("oms.inventory.AllocationFailed.v1", topic=INVENTORY_EVENTS)
class AllocationFailed(Contract):
    order_id: UUID
    location_id: LocationId
    reason: ReasonCode = Field(description="LOCATION_SHORT or RESERVATION_NOT_HELD")


@contract("oms.inventory.ReservationDeallocated.v1", topic=INVENTORY_EVENTS)
class ReservationDeallocated(Contract):
    order_id: UUID
    location_id: LocationId
    availability: list[LocationAvailability] = Field(description="Where the held SKUs are now, for re-routing")


@contract("oms.inventory.ReservationReleased.v1", topic=INVENTORY_EVENTS)
class ReservationReleased(Contract):
    order_id: UUID
    previous_status: Literal["held", "allocated", "none"]


@contract("oms.inventory.ReservationCommitted.v1", topic=INVENTORY_EVENTS)
class ReservationCommitted(Contract):
    order_id: UUID
    location_id: LocationId


@contract("oms.inventory.StockReceived.v1", topic=INVENTORY_EVENTS)
class StockReceived(Contract):
    receipt_id: str
    sku: Sku
    location_id: LocationId
    quantity: int
    on_hand: int

    def key(self) -> str:
        return self.sku
