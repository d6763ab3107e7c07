"""The order saga, declared as data: `STEPS` lists each step (the state that waits on it, the command it sends,
the compensation registered before that command goes out, and the replies it accepts, each with what it leads
to). The transition table, the command sent again on a deadline, the states with deadlines and the README's
table ("The saga, step by step") all come from that one declaration (`table()` prints it).

Compensations are registered *before* the step they undo is sent (a step whose answer never came may still
have happened): `release_reservation` before ReserveStock, `cancel_fulfillment` before RequestFulfillment.
Cancelling (customer request, no route, too many rejections, a step that never answers) runs every registered
compensation; with an open fulfilment order it first waits in `cancelling` for the location to let go, because
an order that has shipped cannot be cancelled.

Every step that sends a command has a deadline (kept in the saga row by the store). When it passes, the command
is sent again, up to MAX_STEP_ATTEMPTS times; then the saga cancels with STEP_TIMEOUT. `cancelling` never gives
up: undoing must finish. A reply that the current state does not expect (late, duplicate, out of order)
changes nothing, and so does a reply whose ids are not the saga's own: the location it waits on (the one it
deallocates when reallocating) and that location's fulfilment order — anyone able to write a reply topic could
otherwise ship, cancel or re-route an order with a made-up one. Everything here is pure; the handler loads the
row, calls a function, stores the result.
"""

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from decimal import Decimal
from typing import get_type_hints
from uuid import UUID

from shared.contracts import Contract
from shared.contracts.common import Delivery, Line, PickupInStore, ReasonCode
from shared.contracts.fulfillment import (
    CancelFulfillment,
    DeliveryConfirmed,
    FulfillmentCancelled,
    FulfillmentOrderCreated,
    FulfillmentOrderProgressed,
    FulfillmentRejected,
    PickupCompleted,
    PickupExpired,
    RequestFulfillment,
    ShipmentConfirmed,
    fulfillment_order_id,
)
from shared.contracts.inventory import (
    AllocateReservation,
    AllocationFailed,
    CommitReservation,
    DeallocateReservation,
    LocationAvailability,
    ReleaseReservation,
    ReservationAllocated,
    ReservationDeallocated,
    ReservationExpired,
    ReserveStock,
    StockBackordered,
    StockReserved,
    StockUnavailable,
)
from shared.contracts.orders import (
    OrderBackordered,
    OrderCancellationRejected,
    OrderCancelled,
    OrderConfirmed,
    OrderDelivered,
    OrderLinesCancelled,
    OrderPickedUp,
    OrderReadyForPickup,
    OrderShipped,
    PricedLine,
)
from shared.contracts.routing import OrderRouted, RouteNotFound, RouteOrder

MAX_LOCATION_ATTEMPTS = 3  # locations tried (allocation failures and rejections) before giving up
MAX_STEP_ATTEMPTS = 3  # sends of one step's command before a silent step cancels the order

RELEASE = "release_reservation"
CANCEL_FULFILLMENT = "cancel_fulfillment"
CUSTOMER_CANCELLED = "CUSTOMER_CANCELLED"


@dataclass(frozen=True)
class Saga:
    order_id: UUID
    state: str
    lines: tuple[Line, ...]
    delivery: Delivery
    channel: str = ""
    channel_order_id: str = ""
    location_id: str | None = None
    fulfillment_order_id: UUID | None = None
    availability: tuple[LocationAvailability, ...] = ()
    excluded_locations: tuple[str, ...] = ()
    compensations: tuple[str, ...] = ()
    cancel_reason: ReasonCode | None = None
    cancel_stage: str | None = None
    attempts: int = 0  # sends of the current step's command
    order_value: Decimal | None = None  # goods value: routing splits only orders worth enough
    backorder_skus: tuple[str, ...] = ()  # the SKUs the channel lets this order wait for


def order_value(lines: Iterable[PricedLine]) -> Decimal:
    return sum((line.unit_price * line.quantity for line in lines), Decimal(0))


@dataclass(frozen=True)
class Step:
    saga: Saga
    messages: list[Contract] = field(default_factory=list)


def start(saga: Saga) -> Step:
    return _wait(replace(saga, state="reserving"))


def _reserved(saga: Saga, reply: StockReserved) -> Step:
    return _wait(replace(saga, state="routing", availability=tuple(reply.availability)))


def _backordered(saga: Saga, reply: StockBackordered) -> Step:
    short = [Line(sku=s.sku, quantity=s.requested - s.available) for s in reply.shortages]
    return Step(replace(saga, state="backordered", attempts=0),
                [OrderBackordered(order_id=saga.order_id, short=short, expected_on=reply.expected_on)])


def _unavailable(saga: Saga, reply: StockUnavailable) -> Step:
    # The release stays registered: a ReserveStock sent again on a deadline may still succeed after this answer.
    return _cancel(saga, reply.reason)


def _expired(saga: Saga, reply: ReservationExpired) -> Step:
    return _cancel(saga, ReasonCode(code="RESERVATION_EXPIRED"))


def _routed(saga: Saga, reply: OrderRouted) -> Step:
    return _wait(replace(saga, state="allocating", location_id=reply.location_id))


def _no_route(saga: Saga, reply: RouteNotFound) -> Step:
    return _cancel(saga, reply.reason)


def _allocated(saga: Saga, reply: ReservationAllocated) -> Step:
    return _wait(replace(saga, state="fulfilling"))


def _allocation_failed(saga: Saga, reply: AllocationFailed) -> Step:
    return _try_elsewhere(saga, reply.location_id, "routing")


def _fulfilment_created(saga: Saga, reply: FulfillmentOrderCreated) -> Step:
    confirmed = replace(saga, state="awaiting_shipment", fulfillment_order_id=reply.fulfillment_order_id)
    return Step(confirmed, [OrderConfirmed(order_id=saga.order_id, location_id=reply.location_id,
                                           fulfillment_order_id=reply.fulfillment_order_id)])


def _rejected(saga: Saga, reply: FulfillmentRejected) -> Step:
    nothing_to_withdraw = replace(saga, compensations=_without(saga, CANCEL_FULFILLMENT))
    if isinstance(saga.delivery, PickupInStore):  # the customer comes to this store: no other can serve them
        return _cancel(nothing_to_withdraw, ReasonCode(code="PICKUP_REJECTED", detail=reply.reason.code))
    return _try_elsewhere(nothing_to_withdraw, reply.location_id, "reallocating")


def _progressed(saga: Saga, reply: FulfillmentOrderProgressed) -> Step:
    """Picked, packed, ...: on the order's timeline. Ready for pickup: the customer is told to come."""
    if reply.status != "ready_for_pickup":
        return Step(saga)
    return Step(replace(saga, state="ready_for_pickup"),
                [OrderReadyForPickup(order_id=saga.order_id, fulfillment_order_id=reply.fulfillment_order_id,
                                     store_id=reply.location_id)])


def _picked_up(saga: Saga, reply: PickupCompleted) -> Step:
    messages: list[Contract] = [
        CommitReservation(order_id=saga.order_id),
        OrderPickedUp(order_id=saga.order_id, fulfillment_order_id=reply.fulfillment_order_id,
                      store_id=reply.location_id),
    ]
    if saga.state == "cancelling" and saga.cancel_reason and saga.cancel_reason.code == CUSTOMER_CANCELLED:
        messages.append(_cancellation_rejected(saga, "ALREADY_PICKED_UP"))
    return Step(replace(saga, state="picked_up", compensations=(), cancel_reason=None, cancel_stage=None), messages)


def _not_collected(saga: Saga, reply: PickupExpired) -> Step:
    withdrawn = replace(saga, compensations=_without(saga, CANCEL_FULFILLMENT))
    return _cancel(withdrawn, ReasonCode(code="NOT_COLLECTED", detail=f"ready since {reply.ready_since:%Y-%m-%d}"))


def _delivered(saga: Saga, reply: DeliveryConfirmed) -> Step:
    return Step(replace(saga, state="delivered"),
                [OrderDelivered(order_id=saga.order_id, fulfillment_order_id=reply.fulfillment_order_id)])


def _deallocated(saga: Saga, reply: ReservationDeallocated) -> Step:
    return _wait(replace(saga, state="routing", location_id=None, availability=tuple(reply.availability)))


def _shipped(saga: Saga, reply: ShipmentConfirmed) -> Step:
    """A shipment: its units leave stock. The last one (`complete`) ships the order; before it, the rest may
    still ship or be rejected, and nothing is cancelled any more (the release stays registered for the rest)."""
    messages: list[Contract] = [
        CommitReservation(order_id=saga.order_id, lines=reply.lines),
        OrderShipped(order_id=saga.order_id, fulfillment_order_id=reply.fulfillment_order_id,
                     carrier=reply.carrier, tracking_number=reply.tracking_number, shipment_id=reply.shipment_id,
                     lines=reply.lines, complete=reply.complete),
    ]
    if saga.state == "cancelling" and saga.cancel_reason and saga.cancel_reason.code == CUSTOMER_CANCELLED:
        messages.append(_cancellation_rejected(saga, "ALREADY_SHIPPED"))
    shipping = replace(saga, cancel_reason=None, cancel_stage=None, attempts=0)
    if reply.complete:
        return Step(replace(shipping, state="shipped", compensations=()), messages)
    return Step(replace(shipping, state="partially_shipped", compensations=(RELEASE,)), messages)


def _rest_rejected(saga: Saga, reply: FulfillmentRejected) -> Step:
    """A short pick: the location shipped part and cannot fill the rest. The rest is cancelled, its stock
    released; the order has shipped what it will."""
    return Step(replace(saga, state="shipped", compensations=()), [
        ReleaseReservation(order_id=saga.order_id, reason="SHORT_PICK"),
        OrderLinesCancelled(order_id=saga.order_id, lines=reply.lines,
                            reason=ReasonCode(code="SHORT_PICK", detail=reply.reason.code))])


def _fulfilment_cancelled(saga: Saga, reply: FulfillmentCancelled) -> Step:
    return _finish_cancel(replace(saga, compensations=_without(saga, CANCEL_FULFILLMENT)))


def _reserve(saga: Saga) -> ReserveStock:
    return ReserveStock(order_id=saga.order_id, lines=list(saga.lines), backorder_skus=list(saga.backorder_skus))


def _route(saga: Saga) -> RouteOrder:
    return RouteOrder(order_id=saga.order_id, lines=list(saga.lines), delivery=saga.delivery,
                      availability=list(saga.availability), exclude_locations=list(saga.excluded_locations),
                      order_value=saga.order_value)


def _allocate(saga: Saga) -> AllocateReservation:
    return AllocateReservation(order_id=saga.order_id, location_id=saga.location_id)


def _request_fulfilment(saga: Saga) -> RequestFulfillment:
    return RequestFulfillment(order_id=saga.order_id, location_id=saga.location_id, lines=list(saga.lines),
                              delivery=saga.delivery)


def _deallocate(saga: Saga) -> DeallocateReservation:
    return DeallocateReservation(order_id=saga.order_id, location_id=saga.excluded_locations[-1])


def _withdraw_fulfilment(saga: Saga) -> CancelFulfillment:
    return CancelFulfillment(order_id=saga.order_id, location_id=saga.location_id)


@dataclass(frozen=True)
class Then:
    """What a reply does to the saga, and (for the table) where that leads."""

    apply: Callable[[Saga, Contract], Step]
    leads_to: str


@dataclass(frozen=True)
class SagaStep:
    state: str
    replies: dict[type[Contract], Then]
    command: Callable[[Saga], Contract] | None = None  # None: waits on a location, with no deadline
    compensation: str | None = None  # registered before the command is first sent
    gives_up: bool = True  # after MAX_STEP_ATTEMPTS sends without an answer


CANCELLED = "cancelled: run the compensations, OrderCancelled"
EXPIRED = Then(_expired, "cancelled (RESERVATION_EXPIRED): run the compensations, OrderCancelled")
STEPS = (
    SagaStep("reserving", command=_reserve, compensation=RELEASE, replies={
        StockReserved: Then(_reserved, "routing: RouteOrder"),
        StockBackordered: Then(_backordered, "backordered: OrderBackordered (the channel let it wait)"),
        StockUnavailable: Then(_unavailable, CANCELLED)}),
    SagaStep("backordered", replies={
        StockReserved: Then(_reserved, "routing: RouteOrder (arrivals covered it, in its turn)")}),
    SagaStep("routing", command=_route, replies={
        OrderRouted: Then(_routed, "allocating: AllocateReservation at the chosen location"),
        RouteNotFound: Then(_no_route, CANCELLED),
        ReservationExpired: EXPIRED}),
    SagaStep("allocating", command=_allocate, replies={
        ReservationAllocated: Then(_allocated, "fulfilling: RequestFulfillment"),
        AllocationFailed: Then(_allocation_failed, "routing: RouteOrder without that location (at most 3 tried)"),
        ReservationExpired: EXPIRED}),
    SagaStep("fulfilling", command=_request_fulfilment, compensation=CANCEL_FULFILLMENT, replies={
        FulfillmentOrderCreated: Then(_fulfilment_created, "awaiting_shipment: OrderConfirmed"),
        FulfillmentRejected: Then(_rejected, "reallocating: DeallocateReservation")}),
    SagaStep("awaiting_shipment", replies={
        FulfillmentOrderProgressed: Then(_progressed, "on the timeline; ready for pickup: ready_for_pickup, "
                                                      "OrderReadyForPickup"),
        ShipmentConfirmed: Then(_shipped, "shipped: CommitReservation, OrderShipped (part of it: partially_shipped)"),
        FulfillmentRejected: Then(_rejected, "reallocating: DeallocateReservation (a pickup order: cancelled, "
                                             "PICKUP_REJECTED)")}),
    SagaStep("ready_for_pickup", replies={
        PickupCompleted: Then(_picked_up, "picked_up: CommitReservation, OrderPickedUp"),
        PickupExpired: Then(_not_collected, "cancelled, NOT_COLLECTED: ReleaseReservation (back on the shelf), "
                                            "OrderCancelled"),
        FulfillmentRejected: Then(_rejected, "cancelled, PICKUP_REJECTED")}),
    SagaStep("partially_shipped", replies={
        ShipmentConfirmed: Then(_shipped, "partially_shipped, or shipped with the last: CommitReservation of its "
                                          "lines, OrderShipped"),
        FulfillmentRejected: Then(_rest_rejected, "shipped (short pick): ReleaseReservation of the rest, "
                                                  "OrderLinesCancelled")}),
    SagaStep("shipped", replies={
        DeliveryConfirmed: Then(_delivered, "delivered: OrderDelivered")}),
    SagaStep("reallocating", command=_deallocate, replies={
        ReservationDeallocated: Then(_deallocated, "routing: RouteOrder without the rejecting locations"),
        ReservationExpired: EXPIRED}),
    SagaStep("cancelling", command=_withdraw_fulfilment, gives_up=False, replies={
        ShipmentConfirmed: Then(_shipped, "shipped: CommitReservation, OrderShipped (a customer's cancellation "
                                          "is answered ALREADY_SHIPPED)"),
        PickupCompleted: Then(_picked_up, "picked_up: CommitReservation, OrderPickedUp (a customer's "
                                          "cancellation is answered ALREADY_PICKED_UP)"),
        FulfillmentCancelled: Then(_fulfilment_cancelled, "cancelled: ReleaseReservation, OrderCancelled")}),
)
STEP_OF = {step.state: step for step in STEPS}
TRANSITIONS = {(step.state, reply): then.apply for step in STEPS for reply, then in step.replies.items()}
REPLY_TYPES = frozenset(reply for _, reply in TRANSITIONS)
WAITING = frozenset(step.state for step in STEPS if step.command)  # the states with a deadline


README_TABLE_START = "<!-- saga table: generated from services/capture/saga.py STEPS (saga.table()) -->\n"
README_TABLE_END = "\n<!-- end of saga table -->"


def table() -> str:
    """The saga as the README shows it (between README_TABLE_START and README_TABLE_END; `oms asyncapi` puts it
    there)."""
    rows = [f"| {f'`{step.state}`' if first else ''} | {_sends(step) if first else ''} | `{reply.__name__}` | "
            f"{then.leads_to} |"
            for step in STEPS for first, (reply, then) in zip([True] + [False] * len(step.replies),
                                                              step.replies.items())]
    return "\n".join(["| state | sends (again on its deadline) | reply | leads to |", "|---|---|---|---|", *rows])


def _sends(step: SagaStep) -> str:
    if step.command is None:
        return "— (waits on the location)"
    registers = f", registering `{step.compensation}` first" if step.compensation else ""
    forever = ", never gives up" if not step.gives_up else ""
    return f"`{get_type_hints(step.command)['return'].__name__}`{registers}{forever}"


def advance(saga: Saga, reply: Contract) -> Step | None:
    """The next step for this reply, or None when the current state does not expect it or the reply names a
    location or fulfilment order that is not the saga's."""
    transition = TRANSITIONS.get((saga.state, type(reply)))
    return transition(saga, reply) if transition and claims_hold(saga, reply) else None


def claims_hold(saga: Saga, reply: Contract) -> bool:
    expected_location = saga.excluded_locations[-1] if saga.state == "reallocating" else saga.location_id
    if isinstance(reply, OrderRouted) or not hasattr(reply, "location_id"):
        return True
    if reply.location_id != expected_location:
        return False
    return (not hasattr(reply, "fulfillment_order_id")
            or reply.fulfillment_order_id == fulfillment_order_id(saga.order_id, expected_location))


def request_cancel(saga: Saga, reason: str) -> Step:
    """The channel asks to cancel: honoured before shipment, answered with a rejection after."""
    if saga.state in ("partially_shipped", "shipped", "delivered"):
        return Step(saga, [_cancellation_rejected(saga, "ALREADY_SHIPPED")])
    if saga.state == "picked_up":
        return Step(saga, [_cancellation_rejected(saga, "ALREADY_PICKED_UP")])
    if saga.state == "cancelled":
        return Step(saga, [_cancellation_rejected(saga, "ALREADY_CANCELLED")])
    if saga.state == "cancelling":
        return Step(saga)
    return _cancel(saga, ReasonCode(code=CUSTOMER_CANCELLED, detail=reason))


def on_timeout(saga: Saga) -> Step:
    """The current step's deadline passed: ask again, or give up and compensate."""
    if not STEP_OF[saga.state].gives_up or saga.attempts < MAX_STEP_ATTEMPTS:
        return _wait(saga, again=True)
    command = pending_command(saga)
    return _cancel(saga, ReasonCode(code="STEP_TIMEOUT",
                                    detail=f"no answer to {command.message_type} after {saga.attempts} tries"))


def pending_command(saga: Saga) -> Contract:
    """The command a waiting state has sent and waits on; sent again on timeout."""
    step = STEP_OF.get(saga.state)
    if step is None or step.command is None:
        raise ValueError(f"state {saga.state} waits for nothing")
    return step.command(saga)


def _wait(saga: Saga, *, again: bool = False) -> Step:
    """Enter (or stay in) a step: register its compensation, then send its command."""
    compensation = STEP_OF[saga.state].compensation
    if compensation and compensation not in saga.compensations:
        saga = replace(saga, compensations=(*saga.compensations, compensation))
    waiting = replace(saga, attempts=saga.attempts + 1 if again else 1)
    return Step(waiting, [pending_command(waiting)])


def _try_elsewhere(saga: Saga, failed_location: str, next_state: str) -> Step:
    excluded = (*saga.excluded_locations, failed_location)
    tried = replace(saga, excluded_locations=excluded)
    if len(excluded) >= MAX_LOCATION_ATTEMPTS:
        return _cancel(tried, ReasonCode(code="NO_ROUTE", detail=f"tried and failed at {', '.join(excluded)}"))
    if next_state == "routing":
        return _wait(replace(tried, state="routing", location_id=None))
    return _wait(replace(tried, state=next_state))


def _cancel(saga: Saga, reason: ReasonCode) -> Step:
    cancelling = replace(saga, cancel_reason=reason, cancel_stage=saga.state)
    if CANCEL_FULFILLMENT in saga.compensations:
        return _wait(replace(cancelling, state="cancelling"))
    return _finish_cancel(cancelling)


def _finish_cancel(saga: Saga) -> Step:
    messages: list[Contract] = []
    if RELEASE in saga.compensations:
        messages.append(ReleaseReservation(order_id=saga.order_id, reason=saga.cancel_reason.code))
    messages.append(OrderCancelled(order_id=saga.order_id, reason=saga.cancel_reason, stage=saga.cancel_stage))
    return Step(replace(saga, state="cancelled", compensations=(), attempts=0), messages)


def _cancellation_rejected(saga: Saga, code: str) -> OrderCancellationRejected:
    return OrderCancellationRejected(order_id=saga.order_id, channel=saga.channel,
                                     channel_order_id=saga.channel_order_id, reason=ReasonCode(code=code))


def _without(saga: Saga, compensation: str) -> tuple[str, ...]:
    return tuple(c for c in saga.compensations if c != compensation)


ORDER_STATUS = {"backordered": "backordered", "awaiting_shipment": "confirmed", "ready_for_pickup": "ready_for_pickup",
                "partially_shipped": "partially_shipped", "shipped": "shipped",
                "delivered": "delivered", "picked_up": "picked_up", "cancelled": "cancelled"}
