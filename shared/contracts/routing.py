"""Routing: locations (warehouses, stores, dropship vendors) and the sourcing decision for an order."""

from typing import Literal
from uuid import UUID

from pydantic import Field

from .base import Contract, contract
from .common import Coordinates, Delivery, Line, LocationId, ReasonCode
from .inventory import LocationAvailability
from .topics import ROUTING_COMMANDS, ROUTING_EVENTS

LocationKind = Literal["warehouse", "store", "dropship"]


@contract("oms.routing.RegisterLocation.v1", topic=ROUTING_COMMANDS)
class RegisterLocation(Contract):
    """Create or update a fulfilment location."""

    location_id: LocationId
    name: str = Field(min_length=1, max_length=200)
    kind: LocationKind
    coordinates: Coordinates
    ships_to_customers: bool = True
    accepts_pickup: bool = False

    def key(self) -> str:
        return self.location_id


@contract("oms.routing.LocationRegistered.v1", topic=ROUTING_EVENTS)
class LocationRegistered(Contract):
    location_id: LocationId
    kind: LocationKind

    def key(self) -> str:
        return self.location_id


@contract("oms.routing.RouteOrder.v1", topic=ROUTING_COMMANDS)
class RouteOrder(Contract):
    order_id: UUID
    lines: list[Line]
    delivery: Delivery
    availability: list[LocationAvailability]
    exclude_locations: list[LocationId] = Field(default_factory=list, description="Locations that already failed")


@contract("oms.routing.OrderRouted.v1", topic=ROUTING_EVENTS)
class OrderRouted(Contract):
    order_id: UUID
    location_id: LocationId
    explanation: str = Field(description="Why this location, in words an operator can read")
    distance_km: float | None = None


@contract("oms.routing.RouteNotFound.v1", topic=ROUTING_EVENTS)
class RouteNotFound(Contract):
    order_id: UUID
    reason: ReasonCode = Field(description="NO_LOCATION_WITH_STOCK, PICKUP_STORE_UNKNOWN or PICKUP_STORE_NO_STOCK")
