"""Routing: locations (warehouses, stores, dropship vendors) and the sourcing decision for an order."""

from decimal import Decimal
from typing import Literal
from uuid import UUID

from pydantic import Field

from .base import Contract, contract
from .common import Assignment, Coordinates, Delivery, Line, LocationId, LocationKind, ReasonCode, Value
from .inventory import LocationAvailability
from .topics import ROUTING_COMMANDS, ROUTING_EVENTS

# Why a candidate location was not chosen (RoutingExplanation.candidates[].rejected).
Rejection = Literal[
    "NO_STOCK",                  # it lacks a line (or, when splitting, every line it could take)
    "FULL",                      # its daily capacity of fulfilment orders is used up
    "SHIP_FROM_STORE_DISABLED",  # a store that does not ship, or not this SKU class
    "NOT_VENDOR_SKU",            # a dropship vendor that does not carry a line
    "OUT_OF_ZONE",               # no coordinates on the address, and none of its zones covers it
    "EXCLUDED",                  # it already failed this order
    "NOT_SHIPPING",              # a warehouse that does not ship to customers
    "NOT_PICKUP_STORE",          # not the store the customer collects at
]


class Zone(Value):
    """Where a location delivers when an address has no coordinates: a country, optionally narrowed to postal codes."""

    country: str = Field(pattern=r"^[A-Z]{2}$", description="ISO 3166-1 alpha-2")
    postal_prefixes: list[str] = Field(default_factory=list, max_length=500,
                                       description="Postal codes starting with one of these; empty: the whole country")


@contract("oms.routing.RegisterLocation.v1", topic=ROUTING_COMMANDS)
class RegisterLocation(Contract):
    """Create or update a fulfilment location."""

    location_id: LocationId
    name: str = Field(min_length=1, max_length=200)
    kind: LocationKind
    coordinates: Coordinates
    ships_to_customers: bool = Field(True, description="For a store: ship-from-store is on")
    accepts_pickup: bool = False
    daily_capacity: int | None = Field(None, ge=0, description="Fulfilment orders a day it can take; none: no limit")
    zones: list[Zone] = Field(default_factory=list, max_length=100,
                              description="Where it delivers to addresses without coordinates")

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
    order_value: Decimal | None = Field(None, ge=0, description="Goods value; a split needs it to reach the rule "
                                                                "set's minimum")
    allocate: bool = Field(False, description="Routed: also ask inventory to pin the reservation where it is routed "
                                              "(AllocateReservation), whose answer goes to the asker")


class Candidate(Value):
    """One location routing looked at: rejected with a reason, or scored (lower is better) and maybe chosen."""

    location_id: LocationId
    kind: LocationKind
    chosen: bool = False
    rejected: Rejection | None = None
    detail: str = ""
    lines: list[str] = Field(default_factory=list, description="The SKUs it could serve; chosen: the SKUs it was given")
    distance_km: float | None = None
    shipping_cost: Decimal | None = None
    priority: float | None = None
    score: float | None = None


class RoutingExplanation(Value):
    """Why an order went where it went: every candidate, why each was rejected, and the scores of the rest."""

    rule_set: str = Field(description="Name and version of the rule set that decided")
    routed_by: Literal["distance", "zone", "pickup"]
    split_limit: int
    candidates: list[Candidate]


@contract("oms.routing.OrderRouted.v1", topic=ROUTING_EVENTS)
class OrderRouted(Contract):
    order_id: UUID
    location_id: LocationId = Field(description="The location, or the first of a split's assignments")
    explanation: str = Field(description="Why this location, in words an operator can read")
    distance_km: float | None = None
    assignments: list[Assignment] = Field(default_factory=list,
                                          description="Location and lines; more than one: a split shipment")
    details: RoutingExplanation | None = Field(None, description="The explanation, structured")
    allocation_requested: bool = Field(False, description="Routing has also asked inventory to pin the reservation "
                                                          "as routed (RouteOrder.allocate): the asker awaits "
                                                          "inventory's answer, which names the plan, not this")


@contract("oms.routing.RouteNotFound.v1", topic=ROUTING_EVENTS)
class RouteNotFound(Contract):
    order_id: UUID
    reason: ReasonCode = Field(description="NO_LOCATION_WITH_STOCK, PICKUP_STORE_UNKNOWN or "
                                           "PICKUP_STORE_NO_STOCK")
    details: RoutingExplanation | None = Field(None, description="The explanation, structured")
