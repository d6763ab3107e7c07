"""Fulfillment: work for locations, their pick/pack/ship updates, and the ERP-facing fulfilment events."""

from datetime import datetime
from typing import Literal
from uuid import UUID

from pydantic import Field, model_validator

from .base import Contract, contract
from .common import Delivery, Line, LocationId
from .topics import FULFILLMENT_COMMANDS, FULFILLMENT_EVENTS, FULFILLMENT_LOCATION_UPDATES, FULFILLMENT_WORK


@contract("oms.fulfillment.RequestFulfillment.v1", topic=FULFILLMENT_COMMANDS)
class RequestFulfillment(Contract):
    order_id: UUID
    location_id: LocationId
    lines: list[Line]
    delivery: Delivery


@contract("oms.fulfillment.FulfillmentRequested.v1", topic=FULFILLMENT_WORK)
class FulfillmentRequested(Contract):
    """A work item for one location: pick, pack and ship (or hand over at the store) these lines."""

    fulfillment_order_id: UUID
    order_id: UUID
    location_id: LocationId
    lines: list[Line]
    delivery: Delivery


@contract("oms.fulfillment.LocationUpdate.v1", topic=FULFILLMENT_LOCATION_UPDATES)
class LocationUpdate(Contract):
    """A location reports progress on a fulfilment order."""

    fulfillment_order_id: UUID
    order_id: UUID
    status: Literal["picked", "packed", "shipped"]
    carrier: str | None = Field(None, max_length=50)
    tracking_number: str | None = Field(None, max_length=100)

    @model_validator(mode="after")
    def shipped_has_tracking(self) -> "LocationUpdate":
        if self.status == "shipped" and not (self.carrier and self.tracking_number):
            raise ValueError("a shipped update needs carrier and tracking_number")
        return self


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
    status: Literal["picked", "packed"]


@contract("oms.fulfillment.ShipmentConfirmed.v1", topic=FULFILLMENT_EVENTS)
class ShipmentConfirmed(Contract):
    """The ERP's record of a shipment: emitted exactly once in effect per fulfilment order."""

    fulfillment_order_id: UUID
    order_id: UUID
    location_id: LocationId
    lines: list[Line]
    carrier: str
    tracking_number: str
    shipped_at: datetime
