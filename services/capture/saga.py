"""The order saga, as a table: for each state, the replies it accepts and what each one leads to.

    reserving          --StockReserved-->         routing            (send RouteOrder)
    reserving          --StockUnavailable-->      cancelled
    routing            --OrderRouted-->           allocating         (send AllocateReservation)
    routing            --RouteNotFound-->         cancelled          (compensate: ReleaseReservation)
    allocating         --ReservationAllocated-->  fulfilling         (send RequestFulfillment)
    allocating         --AllocationFailed-->      routing            (re-route without that location)
                                                  or cancelled       (after MAX_ALLOCATION_ATTEMPTS; compensate)
    fulfilling         --FulfillmentOrderCreated-> awaiting_shipment (tell the channel: OrderConfirmed)
    awaiting_shipment  --ShipmentConfirmed-->     shipped            (send CommitReservation; OrderShipped)

A reply that the current state does not expect (late, duplicate, out of order) changes nothing.
Pure functions: the handler loads the saga row, calls `advance`, stores the result in the same transaction.
"""

from collections.abc import Callable
from dataclasses import dataclass, field, replace
from uuid import UUID

from shared.contracts import Contract
from shared.contracts.common import Delivery, Line, ReasonCode
from shared.contracts.fulfillment import FulfillmentOrderCreated, RequestFulfillment, ShipmentConfirmed
from shared.contracts.inventory import (
    AllocateReservation,
    AllocationFailed,
    CommitReservation,
    LocationAvailability,
    ReleaseReservation,
    ReservationAllocated,
    ReserveStock,
    StockReserved,
    StockUnavailable,
)
from shared.contracts.orders import OrderCancelled, OrderConfirmed, OrderShipped
from shared.contracts.routing import OrderRouted, RouteNotFound, RouteOrder

MAX_ALLOCATION_ATTEMPTS = 3
TERMINAL = frozenset({"shipped", "cancelled"})


@dataclass(frozen=True)
class Saga:
    order_id: UUID
    state: str
    lines: tuple[Line, ...]
    delivery: Delivery
    location_id: str | None = None
    fulfillment_order_id: UUID | None = None
    availability: tuple[LocationAvailability, ...] = ()
    excluded_locations: tuple[str, ...] = ()
    cancel_reason: ReasonCode | None = None


@dataclass(frozen=True)
class Step:
    saga: Saga
    messages: list[Contract] = field(default_factory=list)


def start(saga: Saga) -> Step:
    return Step(replace(saga, state="reserving"), [ReserveStock(order_id=saga.order_id, lines=list(saga.lines))])


def _reserved(saga: Saga, reply: StockReserved) -> Step:
    routed = replace(saga, state="routing", availability=tuple(reply.availability))
    return Step(routed, [_route(routed)])


def _unavailable(saga: Saga, reply: StockUnavailable) -> Step:
    return _cancel(saga, reply.reason, release=False)


def _routed(saga: Saga, reply: OrderRouted) -> Step:
    return Step(replace(saga, state="allocating", location_id=reply.location_id),
                [AllocateReservation(order_id=saga.order_id, location_id=reply.location_id)])


def _no_route(saga: Saga, reply: RouteNotFound) -> Step:
    return _cancel(saga, reply.reason, release=True)


def _allocated(saga: Saga, reply: ReservationAllocated) -> Step:
    return Step(replace(saga, state="fulfilling"),
                [RequestFulfillment(order_id=saga.order_id, location_id=reply.location_id,
                                    lines=list(saga.lines), delivery=saga.delivery)])


def _allocation_failed(saga: Saga, reply: AllocationFailed) -> Step:
    excluded = (*saga.excluded_locations, reply.location_id)
    if len(excluded) >= MAX_ALLOCATION_ATTEMPTS:
        reason = ReasonCode(code="NO_ROUTE", detail=f"allocation failed at {', '.join(excluded)}")
        return _cancel(replace(saga, excluded_locations=excluded), reason, release=True)
    rerouted = replace(saga, state="routing", location_id=None, excluded_locations=excluded)
    return Step(rerouted, [_route(rerouted)])


def _fulfilment_created(saga: Saga, reply: FulfillmentOrderCreated) -> Step:
    if reply.location_id != saga.location_id:
        return Step(saga)
    confirmed = replace(saga, state="awaiting_shipment", fulfillment_order_id=reply.fulfillment_order_id)
    return Step(confirmed, [OrderConfirmed(order_id=saga.order_id, location_id=reply.location_id,
                                           fulfillment_order_id=reply.fulfillment_order_id)])


def _shipped(saga: Saga, reply: ShipmentConfirmed) -> Step:
    return Step(replace(saga, state="shipped"), [
        CommitReservation(order_id=saga.order_id),
        OrderShipped(order_id=saga.order_id, fulfillment_order_id=reply.fulfillment_order_id,
                     carrier=reply.carrier, tracking_number=reply.tracking_number),
    ])


def _route(saga: Saga) -> RouteOrder:
    return RouteOrder(order_id=saga.order_id, lines=list(saga.lines), delivery=saga.delivery,
                      availability=list(saga.availability), exclude_locations=list(saga.excluded_locations))


def _cancel(saga: Saga, reason: ReasonCode, *, release: bool) -> Step:
    messages: list[Contract] = []
    if release:
        messages.append(ReleaseReservation(order_id=saga.order_id, reason=reason.code))
    messages.append(OrderCancelled(order_id=saga.order_id, reason=reason, stage=saga.state))
    return Step(replace(saga, state="cancelled", cancel_reason=reason), messages)


TRANSITIONS: dict[tuple[str, type[Contract]], Callable[[Saga, Contract], Step]] = {
    ("reserving", StockReserved): _reserved,
    ("reserving", StockUnavailable): _unavailable,
    ("routing", OrderRouted): _routed,
    ("routing", RouteNotFound): _no_route,
    ("allocating", ReservationAllocated): _allocated,
    ("allocating", AllocationFailed): _allocation_failed,
    ("fulfilling", FulfillmentOrderCreated): _fulfilment_created,
    ("awaiting_shipment", ShipmentConfirmed): _shipped,
}

REPLY_TYPES = frozenset(reply for _, reply in TRANSITIONS)


def advance(saga: Saga, reply: Contract) -> Step | None:
    """The next step for this reply, or None when the current state does not expect it."""
    transition = TRANSITIONS.get((saga.state, type(reply)))
    return transition(saga, reply) if transition else None


ORDER_STATUS = {"awaiting_shipment": "confirmed", "shipped": "shipped", "cancelled": "cancelled"}
