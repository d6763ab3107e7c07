"""Fulfillment: work for locations, their pick/pack/ship updates, and the ERP-facing fulfilment events."""

from datetime import date, datetime
from typing import Literal
from uuid import UUID, uuid5

from pydantic import Field, model_validator

from .base import NO_CONTROL_CHARACTERS, Contract, contract
from .common import Address, Delivery, Line, LocationId, LocationKind, ReasonCode, Value
from .money import Billing, ShipmentAmounts
from .topics import (FULFILLMENT_COMMANDS, FULFILLMENT_DROPSHIP_ORDERS, FULFILLMENT_EVENTS,
                     FULFILLMENT_LOCATION_UPDATES, FULFILLMENT_WORK)


def shipment_id(fulfillment_order: UUID, tracking_number: str) -> UUID:
    """A parcel is known by its tracking number: reported twice, it is one shipment."""
    return uuid5(fulfillment_order, tracking_number)


def fulfillment_order_id(order_id: UUID, location_id: str, round: int = 0) -> UUID:
    """A fulfilment order's id, which anyone (fulfilment, the saga) can recompute: the order's first at a
    location, or (`round` n) the one after n earlier ones there (an edit re-routed the order back to it)."""
    return uuid5(order_id, location_id if round == 0 else f"{location_id}#{round}")


def purchase_order_number(fulfillment_order: UUID) -> str:
    """The purchase order a dropship vendor gets for a fulfilment order (itself derived from order and vendor):
    the same on every recomputation, 64 bits of the fulfilment order's id."""
    return f"PO-{fulfillment_order.hex[:16].upper()}"


@contract("oms.fulfillment.RequestFulfillment.v1", topic=FULFILLMENT_COMMANDS)
class RequestFulfillment(Contract):
    order_id: UUID
    location_id: LocationId
    lines: list[Line]
    delivery: Delivery
    fulfillment_order_id: UUID | None = Field(None, description="Its id; omitted: the order's first at that "
                                                                "location (fulfillment_order_id(order, location))")
    billing: Billing | None = Field(None, description="The order's charges, to price each shipment for the ERP "
                                                      "(absent from senders that predate it: no amounts)")
    location_kind: LocationKind | None = Field(None, description="The location's kind as routing chose it (a "
                                                                 "dropship vendor gets a purchase order); absent "
                                                                 "from senders that predate it: the kind "
                                                                 "fulfillment last heard of (LocationRegistered)")


@contract("oms.fulfillment.CancelFulfillment.v1", topic=FULFILLMENT_COMMANDS)
class CancelFulfillment(Contract):
    """Withdraw the order's work from a location, unless it has shipped."""

    order_id: UUID
    location_id: LocationId
    fulfillment_order_id: UUID | None = Field(None, description="Which one; omitted: the order's first there")


@contract("oms.fulfillment.FulfillmentRequested.v1", topic=FULFILLMENT_WORK)
class FulfillmentRequested(Contract):
    """A work item for one location: pick, pack and ship (or hand over at the store) these lines."""

    fulfillment_order_id: UUID
    order_id: UUID
    location_id: LocationId
    lines: list[Line]
    delivery: Delivery


@contract("oms.fulfillment.FulfillmentOrderAmended.v1", topic=FULFILLMENT_WORK)
class FulfillmentOrderAmended(Contract):
    """The order was edited before picking: work on these lines now (they replace the earlier ones)."""

    fulfillment_order_id: UUID
    order_id: UUID
    location_id: LocationId
    lines: list[Line]


@contract("oms.fulfillment.FulfillmentWithdrawn.v1", topic=FULFILLMENT_WORK)
class FulfillmentWithdrawn(Contract):
    """Stop working on this fulfilment order: the order was cancelled."""

    fulfillment_order_id: UUID
    order_id: UUID
    location_id: LocationId


@contract("oms.fulfillment.PurchaseOrderIssued.v1", topic=FULFILLMENT_DROPSHIP_ORDERS)
class PurchaseOrderIssued(Contract):
    """A purchase order for a dropship vendor: ship these lines to this customer by `ship_by`. The vendor
    acknowledges (`accepted`) or rejects it and reports shipment with `LocationUpdate`s on the fulfilment order."""

    purchase_order_number: str = Field(pattern=r"^PO-[0-9A-F]{16}$", description="From the fulfilment order's id")
    fulfillment_order_id: UUID
    order_id: UUID
    location_id: LocationId = Field(description="The vendor")
    lines: list[Line]
    ship_to: Address = Field(description="The label: the customer's name and address")
    ship_by: date = Field(description="The vendor is asked to ship by this day (UTC)")

    def key(self) -> str:
        return self.location_id


@contract("oms.fulfillment.PurchaseOrderCancelled.v1", topic=FULFILLMENT_DROPSHIP_ORDERS)
class PurchaseOrderCancelled(Contract):
    """Do not ship this purchase order: the order was cancelled before the vendor shipped."""

    purchase_order_number: str = Field(pattern=r"^PO-[0-9A-F]{16}$")
    fulfillment_order_id: UUID
    order_id: UUID
    location_id: LocationId = Field(description="The vendor")

    def key(self) -> str:
        return self.location_id


@contract("oms.fulfillment.PurchaseOrderAmended.v1", topic=FULFILLMENT_DROPSHIP_ORDERS)
class PurchaseOrderAmended(Contract):
    """The order was edited before the vendor acknowledged or shipped it: ship these lines instead (they replace
    the purchase order's earlier ones)."""

    purchase_order_number: str = Field(pattern=r"^PO-[0-9A-F]{16}$")
    fulfillment_order_id: UUID
    order_id: UUID
    location_id: LocationId = Field(description="The vendor")
    lines: list[Line]

    def key(self) -> str:
        return self.location_id


@contract("oms.fulfillment.LocationUpdate.v1", topic=FULFILLMENT_LOCATION_UPDATES)
class LocationUpdate(Contract):
    """A location reports progress on a fulfilment order, or rejects it (cannot fill it: short pick, closed, ...).

    Ship-to: accepted -> picked -> packed -> shipped (carrier, tracking) -> delivered. Pickup in store:
    accepted -> picked -> ready_for_pickup -> picked_up (the customer has collected). A location may skip steps;
    a step backwards changes nothing; a step of the other kind of delivery is refused."""

    fulfillment_order_id: UUID
    order_id: UUID
    status: Literal["accepted", "picked", "packed", "shipped", "delivered", "ready_for_pickup", "picked_up",
                    "rejected"]
    carrier: str | None = Field(None, max_length=50)
    tracking_number: str | None = Field(None, max_length=100)
    reason: str | None = Field(None, max_length=200, description="Why the location rejects, e.g. SHORT_PICK")
    lines: list[Line] | None = Field(None, max_length=500, description="shipped: what this parcel holds (a partial "
                                     "shipment); omitted: everything not shipped yet. A rejection after a partial "
                                     "shipment rejects everything not shipped (a short pick).")

    @model_validator(mode="after")
    def shipped_has_tracking(self) -> "LocationUpdate":
        if self.status == "shipped" and not (self.carrier and self.tracking_number):
            raise ValueError("a shipped update needs carrier and tracking_number")
        return self


Condition = Literal["restock", "dispose"]


class ReturnedLine(Line):
    condition: Condition = Field(description="restock: back into sellable stock; dispose: written off")


@contract("oms.fulfillment.ExpectReturn.v1", topic=FULFILLMENT_COMMANDS)
class ExpectReturn(Contract):
    """An approved return is on its way to a location: tell it what to expect."""

    order_id: UUID
    return_id: str
    location_id: LocationId
    lines: list[Line]


@contract("oms.fulfillment.ReturnExpected.v1", topic=FULFILLMENT_WORK)
class ReturnExpected(Contract):
    """For a location: a customer's return (its RMA) is coming; report what arrives and in what condition."""

    order_id: UUID
    return_id: str
    location_id: LocationId
    lines: list[Line]


@contract("oms.fulfillment.ReturnReceipt.v1", topic=FULFILLMENT_LOCATION_UPDATES)
class ReturnReceipt(Contract):
    """A location received a return: per line, how many and in what condition (at most what was expected)."""

    order_id: UUID
    return_id: str = Field(min_length=1, max_length=100, pattern=NO_CONTROL_CHARACTERS)
    lines: list[ReturnedLine] = Field(min_length=1, max_length=500)


@contract("oms.fulfillment.ReturnReceived.v1", topic=FULFILLMENT_EVENTS)
class ReturnReceived(Contract):
    """The ERP's and the saga's record of a return's arrival: once per return, dated by the location's report."""

    order_id: UUID
    return_id: str
    location_id: LocationId
    lines: list[ReturnedLine]
    received_at: datetime


@contract("oms.fulfillment.FulfillmentOrderCreated.v1", topic=FULFILLMENT_EVENTS)
class FulfillmentOrderCreated(Contract):
    fulfillment_order_id: UUID
    order_id: UUID
    location_id: LocationId
    lines: list[Line]


@contract("oms.fulfillment.FulfillmentOrderProgressed.v1", topic=FULFILLMENT_EVENTS)
class FulfillmentOrderProgressed(Contract):
    fulfillment_order_id: UUID
    order_id: UUID
    location_id: LocationId
    status: Literal["accepted", "picked", "packed", "ready_for_pickup"]


@contract("oms.fulfillment.FulfillmentRejected.v1", topic=FULFILLMENT_EVENTS)
class FulfillmentRejected(Contract):
    """The location cannot fill the fulfilment order, or (after a partial shipment) the rest of it; the saga
    re-routes a ship-to order that shipped nothing elsewhere, cancels the rest of one that shipped part, and
    cancels a pickup order (the customer chose that store: PICKUP_REJECTED)."""

    fulfillment_order_id: UUID
    order_id: UUID
    location_id: LocationId
    reason: ReasonCode
    lines: list[Line] = Field(default_factory=list, description="What the location will not ship")
    shipped: list[Line] = Field(default_factory=list, description="What it shipped before (a short pick)")


@contract("oms.fulfillment.FulfillmentCancelled.v1", topic=FULFILLMENT_EVENTS)
class FulfillmentCancelled(Contract):
    order_id: UUID
    location_id: LocationId
    fulfillment_order_id: UUID
    existed: bool = Field(description="False when there was nothing to withdraw at that location")


class PartAmendment(Value):
    fulfillment_order_id: UUID
    location_id: LocationId
    lines: list[Line] = Field(description="Its lines from now on; empty: withdrawn")


@contract("oms.fulfillment.AmendFulfillment.v1", topic=FULFILLMENT_COMMANDS)
class AmendFulfillment(Contract):
    """An order edit changes fulfilment orders that are not picked yet: all of them as asked, or none
    (FulfillmentAmendmentRefused). The same `edit_id` asked again gets the same answer."""

    order_id: UUID
    edit_id: str = Field(min_length=1, max_length=100)
    parts: list[PartAmendment] = Field(min_length=1, max_length=10)
    billing: Billing | None = Field(None, description="The order's charges after the edit")


@contract("oms.fulfillment.FulfillmentAmended.v1", topic=FULFILLMENT_EVENTS)
class FulfillmentAmended(Contract):
    order_id: UUID
    edit_id: str
    parts: list[PartAmendment]


@contract("oms.fulfillment.FulfillmentAmendmentRefused.v1", topic=FULFILLMENT_EVENTS)
class FulfillmentAmendmentRefused(Contract):
    """Nothing was changed: a fulfilment order is picked already (ALREADY_PICKED), handed over (ALREADY_SHIPPED,
    ALREADY_PICKED_UP) or closed (FULFILLMENT_CLOSED)."""

    order_id: UUID
    edit_id: str
    fulfillment_order_id: UUID
    location_id: LocationId
    reason: ReasonCode


@contract("oms.fulfillment.FulfillmentCancellationRefused.v1", topic=FULFILLMENT_EVENTS)
class FulfillmentCancellationRefused(Contract):
    order_id: UUID
    location_id: LocationId
    fulfillment_order_id: UUID
    reason: ReasonCode = Field(description="ALREADY_SHIPPED")


@contract("oms.fulfillment.ShipmentConfirmed.v1", topic=FULFILLMENT_EVENTS)
class ShipmentConfirmed(Contract):
    """The ERP's record of a shipment (a parcel): emitted exactly once in effect per shipment. A fulfilment order
    ships in one shipment or several (partial shipments); `complete` on the one that ships its last units."""

    fulfillment_order_id: UUID
    order_id: UUID
    location_id: LocationId
    shipment_id: UUID = Field(description="uuid5 of the fulfilment order and the tracking number (derived when "
                                          "an older sender leaves it out)")
    lines: list[Line]
    carrier: str
    tracking_number: str
    shipped_at: datetime = Field(description="When the location reported it (its message's time)")
    complete: bool = Field(True, description="Nothing of the fulfilment order is left to ship")
    amounts: ShipmentAmounts | None = Field(None, description="What the shipment is worth: channel and channel "
                                                              "order id, currency, per line price, discount, tax "
                                                              "and net, shipping (on the order's first shipment), "
                                                              "total")

    @model_validator(mode="before")
    @classmethod
    def known_by_tracking_number(cls, data: object) -> object:
        needed = {"fulfillment_order_id", "tracking_number"}
        if isinstance(data, dict) and "shipment_id" not in data and needed <= set(data):
            try:
                derived = shipment_id(UUID(str(data["fulfillment_order_id"])), str(data["tracking_number"]))
            except ValueError:
                return data  # the field's own validation says what is wrong
            return {**data, "shipment_id": derived}
        return data


@contract("oms.fulfillment.DeliveryConfirmed.v1", topic=FULFILLMENT_EVENTS)
class DeliveryConfirmed(Contract):
    """The shipment reached the customer (as the location or its carrier reports)."""

    fulfillment_order_id: UUID
    order_id: UUID
    location_id: LocationId
    delivered_at: datetime


@contract("oms.fulfillment.PickupCompleted.v1", topic=FULFILLMENT_EVENTS)
class PickupCompleted(Contract):
    """The ERP's record of goods handed over in store (the pickup order's goods issue): exactly once in effect
    per fulfilment order. Only now is a pickup order complete, not when the goods are ready in the store."""

    fulfillment_order_id: UUID
    order_id: UUID
    location_id: LocationId
    lines: list[Line]
    picked_up_at: datetime = Field(description="When the store reported it (its message's time)")
    amounts: ShipmentAmounts | None = Field(None, description="What the goods handed over are worth (as for a "
                                                              "shipment)")


@contract("oms.fulfillment.PickupExpired.v1", topic=FULFILLMENT_EVENTS)
class PickupExpired(Contract):
    """The customer did not collect within the hold period: the fulfilment order is cancelled and the store
    told to put the goods back (FulfillmentWithdrawn); the saga cancels the order, NOT_COLLECTED."""

    fulfillment_order_id: UUID
    order_id: UUID
    location_id: LocationId
    ready_since: datetime
