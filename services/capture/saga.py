"""The order saga, declared as data. An order is served by one or more fulfilment orders ("parts": a split
shipment has several, each at its own location with its own lines). Two declarations drive it:

- `STEPS`, the order's sourcing steps: for each, the state that waits on it, the command(s) it sends, the
  compensation registered before they go out, and the replies it accepts, each with what it leads to;
- `PART_STEPS`, a fulfilment order's life at its location: for each status of a part, the replies from that
  location it accepts. They are accepted whatever sourcing step the order is in (a split's other part may ship
  while a rejected one is re-sourced).

Once sourcing is done the order's state is derived from its parts (`awaiting_shipment`, `ready_for_pickup`,
`partially_shipped`, `shipped`, `delivered`, `picked_up`). The transition tables, the commands sent again on a
deadline, the states with deadlines and the README's tables ("The saga, step by step") all come from these two
declarations (`table()` prints them).

Compensations are registered *before* the step they undo is sent (a step whose answer never came may still
have happened): `release_reservation` before ReserveStock; a part is recorded as `requested` before its
RequestFulfillment goes out, so cancelling withdraws (CancelFulfillment) every part that may exist. Cancelling
(customer request, no route, too many rejections, a step that never answers) waits in `cancelling` until every
part is withdrawn or handed over: a part that has shipped cannot be cancelled, and an order with one ends shipped
with the rest cancelled (OrderLinesCancelled).

On an order's first sourcing the services pass it on themselves: inventory, once it holds the lines, asks routing
(`ReserveStock.route`), and routing has inventory pin the plan where it routes it (`RouteOrder.allocate`). The
saga waits in `reserving` for inventory's answer to the pinning (the reservation itself is not even read,
ANSWERED_ELSEWHERE); a location found short is excluded and ReserveStock sent again, and on the step's deadline
too: inventory asks routing again with where the lines are then.

A part a location rejects (all of it, or the rest after a short pick) is re-sourced: its units are un-pinned
there, routed anew without that location (nor those already serving the order), pinned and requested elsewhere;
after MAX_LOCATION_ATTEMPTS tried locations, or no route, only those lines are cancelled (the whole order if
nothing else of it is being served). A cancel while they are being pinned elsewhere un-pins them there first:
an allocation that did not answer in time may still have happened. A pickup order's store is the customer's
choice: a rejection there cancels the order (PICKUP_REJECTED).

Every step that sends a command has a deadline (kept in the saga row by the store), counted from the sending:
messages that leave the saga in its step do not put it off. When it passes, the
command is sent again, up to MAX_STEP_ATTEMPTS times; then the saga cancels with STEP_TIMEOUT. `cancelling`
never gives up: undoing must finish. A reply that the current state does not expect (late, duplicate, out of
order) changes nothing, and so does a reply whose ids are not the saga's own: a location it did not choose, a
part in another status, a fulfilment order id that is not the part's — anyone able to write a reply topic
could otherwise ship, cancel or re-route an order with a made-up one. Everything here is pure; the handler
loads the row, calls a function, stores the result.
"""

import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from decimal import Decimal
from typing import get_type_hints

from pydantic import TypeAdapter
from uuid import UUID, uuid5

from shared.contracts import Contract
from shared.contracts.common import Assignment, Delivery, Line, PickupInStore, ReasonCode, merge_lines
from shared.contracts.fulfillment import (
    AmendFulfillment,
    CancelFulfillment,
    DeliveryConfirmed,
    FulfillmentAmended,
    FulfillmentAmendmentRefused,
    FulfillmentCancelled,
    FulfillmentOrderCreated,
    FulfillmentOrderProgressed,
    FulfillmentRejected,
    PartAmendment,
    PickupCompleted,
    PickupExpired,
    RequestFulfillment,
    ShipmentConfirmed,
    fulfillment_order_id,
)
from shared.contracts.money import Billing, ShipmentAmounts
from shared.contracts.payments import (
    AdjustAuthorization,
    AuthorizationAdjusted,
    AuthorizationAdjustmentFailed,
    AuthorizationVoided,
    CapturePayment,
    PaymentCaptured,
    PaymentCaptureFailed,
    RefundPayment,
    VoidAuthorization,
)
from shared.contracts.inventory import (
    AllocateReservation,
    AllocationFailed,
    CommitReservation,
    DeallocateReservation,
    ExtendReservation,
    LocationAvailability,
    OnwardRouting,
    ReleaseReservation,
    ReservationAllocated,
    ReservationDeallocated,
    ReservationExpired,
    ReservationExtended,
    ReservationExtensionRefused,
    ReserveStock,
    StockBackordered,
    StockReserved,
    StockUnavailable,
)
from shared.contracts.orders import (
    Hold,
    OrderBackordered,
    OrderCancellationRejected,
    OrderCancelled,
    OrderConfirmed,
    OrderDelivered,
    OrderEdited,
    OrderEditRefused,
    OrderHeld,
    OrderHoldRefused,
    OrderHoldReleased,
    OrderLinesCancelled,
    OrderPickedUp,
    OrderProgressed,
    OrderReadyForPickup,
    OrderShipped,
    PlaceOrder,
    PricedLine,
)
from shared.contracts.routing import OrderRouted, RouteNotFound, RouteOrder

from .edits import without_lines

_DELIVERY = TypeAdapter(Delivery)
MAX_LOCATION_ATTEMPTS = 3  # locations tried (allocation failures and rejections) before giving up
MAX_STEP_ATTEMPTS = 3  # sends of one step's command before a silent step cancels the order

RELEASE = "release_reservation"
CUSTOMER_CANCELLED = "CUSTOMER_CANCELLED"

LIVE = ("requested", "open", "ready_for_pickup")  # a part the location may still be asked to withdraw
HANDED_OVER = ("partially_shipped", "shipped", "delivered", "picked_up")
TO_MOVE = ("rejected", "moving")  # a part's lines waiting to be re-sourced: still pinned there, or un-pinned
GONE = ("withdrawn", "cancelled", "moved", "dropped")  # withdrawn (by a cancellation of the whole order: cancelled),
# re-sourced elsewhere, or given up on (no route)


@dataclass(frozen=True)
class Part:
    """One fulfilment order: the lines a location was asked for, and where it stands."""

    location_id: str
    lines: tuple[Line, ...]
    status: str  # LIVE, HANDED_OVER, TO_MOVE or GONE
    round: int = 0  # earlier parts of the order at this location (an edit may route it back there)
    location_kind: str | None = None  # as routing planned it (RequestFulfillment.location_kind)


@dataclass(frozen=True)
class Edit:
    """An order edit under way: the order as it will stand, and what it changes."""

    edit_id: str
    placed: dict  # the new PlaceOrder, as stored
    previous_state: str  # held or awaiting_shipment
    added: tuple[Line, ...] = ()
    removed: tuple[Line, ...] = ()
    rerouted: bool = False  # the delivery changed
    amendments: tuple[PartAmendment, ...] = ()  # what fulfilment is asked to change (empty lines: withdraw)


@dataclass(frozen=True)
class Saga:
    order_id: UUID
    state: str
    lines: tuple[Line, ...]
    delivery: Delivery
    channel: str = ""
    channel_order_id: str = ""
    parts: tuple[Part, ...] = ()
    plan: tuple[Assignment, ...] = ()  # routing's answer, being pinned
    availability: tuple[LocationAvailability, ...] = ()
    excluded_locations: tuple[str, ...] = ()
    compensations: tuple[str, ...] = ()
    cancel_reason: ReasonCode | None = None
    cancel_stage: str | None = None
    attempts: int = 0  # sends of the current step's command
    order_value: Decimal | None = None  # goods value: routing splits only orders worth enough
    backorder_skus: tuple[str, ...] = ()  # the SKUs the channel lets this order wait for
    placed: dict = field(default_factory=dict, compare=False, repr=False)  # the accepted PlaceOrder, as stored
    holds: tuple[Hold, ...] = ()  # while any is on, nothing more is released to fulfilment
    captures: tuple[tuple[str, Decimal], ...] = ()  # (capture id, amount) the payment service captured
    voided: bool = False  # what was left of the authorisation is released
    shipped: tuple[Line, ...] = ()  # every unit handed over (shipped or collected): what may be returned
    handed_over_at: datetime | None = None  # the last handover, as the location reported it
    unplaced: tuple[Line, ...] = ()  # held units no part has yet (an edit added them), to be routed
    edit: Edit | None = None
    placed_changed: bool = field(default=False, compare=False)  # an edit changed `placed`: store it
    sent: bool = field(default=False, compare=False)  # the step's command(s) went out: its deadline starts again

    def fulfillment_order(self, part: Part) -> UUID:
        return fulfillment_order_id(self.order_id, part.location_id, part.round)

    def with_part(self, location_id: str, statuses: Iterable[str], **changes) -> "Saga":
        """The saga with the part at this location (in one of `statuses`) changed."""
        at = _part_index(self, location_id, statuses)
        return replace(self, parts=(*self.parts[:at], replace(self.parts[at], **changes), *self.parts[at + 1:]))

    def parts_in(self, *statuses: str) -> list[Part]:
        return [part for part in self.parts if part.status in statuses]

    def sourcing(self) -> list[Line]:
        """The lines routing is asked to place: all of them at first, then those of the parts un-pinned to move
        (and units an edit added)."""
        if not self.parts:
            return list(self.lines)
        return merge_lines([*(line for part in self.parts_in("moving") for line in part.lines), *self.unplaced])

    def serving(self) -> list[str]:
        """Locations with a part that stays (not gone, not being moved): what is re-sourced goes elsewhere (a
        location that rejected its part is excluded on its own account)."""
        return [part.location_id for part in self.parts if part.status not in (*GONE, *TO_MOVE)]


def _part_index(saga: Saga, location_id: str, statuses: Iterable[str]) -> int:
    statuses = tuple(statuses)
    return next(i for i, part in enumerate(saga.parts) if part.location_id == location_id and part.status in statuses)


def order_value(lines: Iterable[PricedLine]) -> Decimal:
    return sum((line.unit_price * line.quantity for line in lines), Decimal(0))


@dataclass(frozen=True)
class Step:
    saga: Saga
    messages: list[Contract] = field(default_factory=list)


def start(saga: Saga) -> Step:
    return _wait(replace(saga, state="reserving"))


# --- sourcing: reserve, route, pin, request -------------------------------------------------------------------

def _reserved(saga: Saga, reply: StockReserved) -> Step:
    """Routed next. Where inventory has asked routing already (ReserveStock's `route`) the reservation is not
    even read (ANSWERED_ELSEWHERE); read anyway, only the answers are awaited, and on the step's deadline RouteOrder
    is sent as usual."""
    routing = replace(saga, state="routing", availability=tuple(reply.availability))
    return Step(replace(routing, attempts=1)) if reply.routing_requested else _wait(routing)


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
    """Pinned next. Where routing has asked inventory to pin it there already, only the answer is awaited; on
    the step's deadline AllocateReservation is sent as usual. (Such a decision is not even read, ANSWERED_ELSEWHERE:
    inventory's answer names the plan.)"""
    allocating = replace(saga, state="allocating", plan=_plan(saga, reply))
    return Step(replace(allocating, attempts=1)) if reply.allocation_requested else _wait(allocating)


def _routing_pins(saga: Saga) -> bool:
    """On an order's first sourcing (nothing served or pinned yet) routing has inventory pin the reservation where
    it routes it (RouteOrder.allocate): a round trip less, and an answer from inventory can only be about what
    routing chose. Re-sourcing, and routing after an edit, ask for the pinning themselves."""
    return not saga.parts and not saga.plan


def _pinned_by_routing(saga: Saga, reply: ReservationAllocated) -> Step:
    """Inventory's answer to the pinning routing asked for (its decision is not read): it names the plan."""
    return _allocated(replace(saga, plan=_plan(saga, reply)), reply)


def _plan(saga: Saga, reply: OrderRouted | ReservationAllocated) -> tuple[Assignment, ...]:
    """The locations and their lines a reply names; one location alone serves all the lines being sourced."""
    return tuple(reply.assignments or [Assignment(location_id=reply.location_id, lines=saga.sourcing())])


def _no_route(saga: Saga, reply: RouteNotFound) -> Step:
    return _give_up_sourcing(saga, reply.reason)


def _allocated(saga: Saga, reply: ReservationAllocated) -> Step:
    """Pinned: on to fulfilment, unless the order is on hold (it waits, reserved, in `held`)."""
    if saga.holds:
        return Step(replace(saga, state="held", attempts=0))
    return _release_to_fulfilment(saga)


def _release_to_fulfilment(saga: Saga) -> Step:
    """The parts being moved are replaced by the plan's, each recorded before it is requested."""
    parts = [replace(part, status="moved") if part.status == "moving" else part for part in saga.parts]
    for a in saga.plan:
        parts.append(Part(a.location_id, tuple(a.lines), "requested", location_kind=a.location_kind,
                          round=sum(part.location_id == a.location_id for part in parts)))
    return _wait(replace(saga, state="fulfilling", parts=tuple(parts), plan=(), unplaced=()))


def _allocation_failed(saga: Saga, reply: AllocationFailed) -> Step:
    return _try_elsewhere(replace(saga, plan=()), reply.location_id)


def _short_on_first_sourcing(saga: Saga, reply: AllocationFailed) -> Step:
    """The location routing chose through inventory is short: inventory is asked again, without it (it knows where
    the lines are now; the saga never read where they were)."""
    return _try_elsewhere(replace(saga, plan=()), reply.location_id, then="reserving")


def _deallocated(saga: Saga, reply: ReservationDeallocated) -> Step:
    moving = replace(saga.with_part(reply.location_id, ["rejected"], status="moving"),
                     availability=tuple(reply.availability))
    if moving.parts_in("rejected"):
        return Step(moving)
    return _wait(replace(moving, state="routing"))


def _reserve(saga: Saga) -> ReserveStock:
    """Inventory asks routing itself once the lines are held (again, when they are: the same answer), without the
    locations tried: two round trips less on the way to fulfilment."""
    return ReserveStock(order_id=saga.order_id, lines=list(saga.lines), backorder_skus=list(saga.backorder_skus),
                        route=OnwardRouting(delivery=saga.delivery, order_value=saga.order_value,
                                            exclude_locations=list(saga.excluded_locations)))


def _route(saga: Saga) -> RouteOrder:
    excluded = list(dict.fromkeys([*saga.excluded_locations, *saga.serving()]))
    return RouteOrder(order_id=saga.order_id, lines=saga.sourcing(), delivery=saga.delivery,
                      availability=list(saga.availability), exclude_locations=excluded,
                      order_value=saga.order_value, allocate=_routing_pins(saga))


def _allocate(saga: Saga) -> AllocateReservation:
    return AllocateReservation(order_id=saga.order_id, location_id=saga.plan[0].location_id,
                               assignments=list(saga.plan))


def _request_fulfilment(saga: Saga) -> list[RequestFulfillment]:
    charges = billing(saga)
    return [RequestFulfillment(order_id=saga.order_id, location_id=part.location_id, lines=list(part.lines),
                               delivery=saga.delivery, billing=charges, location_kind=part.location_kind,
                               fulfillment_order_id=saga.fulfillment_order(part) if part.round else None)
            for part in saga.parts_in("requested")]


def billing(saga: Saga, placed: dict | None = None) -> Billing | None:
    """The order's charges (or those of `placed`, an edit's), for the locations' shipments to be priced (from
    the stored order: validated when it came in)."""
    placed = placed or saga.placed
    if not placed:
        return None
    return Billing(channel=saga.channel, channel_order_id=saga.channel_order_id, currency=placed["currency"],
                   lines=[{key: line[key] for key in ("sku", "quantity", "unit_price", "discount", "tax")
                           if key in line} for line in placed["lines"]],
                   shipping=placed.get("shipping", 0), shipping_tax=placed.get("shipping_tax", 0),
                   prices_include_tax=placed.get("prices_include_tax", False))


def _deallocate(saga: Saga) -> list[DeallocateReservation]:
    return [DeallocateReservation(order_id=saga.order_id, location_id=part.location_id)
            for part in saga.parts_in("rejected")]


def _withdraw_fulfilment(saga: Saga) -> list[CancelFulfillment]:
    return [CancelFulfillment(order_id=saga.order_id, location_id=part.location_id,
                              fulfillment_order_id=saga.fulfillment_order(part) if part.round else None)
            for part in saga.parts_in(*LIVE)]


# --- a part's life at its location ----------------------------------------------------------------------------

def _created(saga: Saga, reply: FulfillmentOrderCreated) -> Step:
    opened = saga.with_part(reply.location_id, ["requested"], status="open")
    confirmed = OrderConfirmed(order_id=saga.order_id, location_id=reply.location_id,
                               fulfillment_order_id=reply.fulfillment_order_id, lines=reply.lines)
    return _after_part(opened, [confirmed])


def _progressed(saga: Saga, reply: FulfillmentOrderProgressed) -> Step:
    """Picked, packed: the channel is told (OrderProgressed). Ready for pickup: the customer is told to come.
    Anything else (accepted) is on the timeline only."""
    if reply.status in ("picked", "packed"):
        return Step(saga, [OrderProgressed(order_id=saga.order_id, fulfillment_order_id=reply.fulfillment_order_id,
                                           location_id=reply.location_id, status=reply.status)])
    if reply.status != "ready_for_pickup":
        return Step(saga)
    ready = saga.with_part(reply.location_id, ["open"], status="ready_for_pickup")
    return _after_part(ready, [OrderReadyForPickup(order_id=saga.order_id, store_id=reply.location_id,
                                                   fulfillment_order_id=reply.fulfillment_order_id)])


def _shipped(saga: Saga, reply: ShipmentConfirmed) -> Step:
    """A shipment: its units leave stock at that location. The part's last one (`complete`) ships the part; the
    order is shipped (OrderShipped.complete) once every part is."""
    status = "shipped" if reply.complete else "partially_shipped"
    shipped = _handed_over(saga.with_part(reply.location_id, ["open", "partially_shipped"], status=status),
                           reply.lines, reply.shipped_at)
    messages: list[Contract] = [
        CommitReservation(order_id=saga.order_id, lines=reply.lines, location_id=reply.location_id),
        OrderShipped(order_id=saga.order_id, fulfillment_order_id=reply.fulfillment_order_id,
                     carrier=reply.carrier, tracking_number=reply.tracking_number, shipment_id=reply.shipment_id,
                     lines=reply.lines, complete=_all_shipped(shipped)),
    ]
    capture = _capture(saga, reply.shipment_id, reply.amounts)
    return _after_part(shipped, messages + capture + _too_late(saga, "ALREADY_SHIPPED"))


def _picked_up(saga: Saga, reply: PickupCompleted) -> Step:
    collected = _handed_over(saga.with_part(reply.location_id, ["ready_for_pickup"], status="picked_up"),
                             reply.lines, reply.picked_up_at)
    messages: list[Contract] = [
        CommitReservation(order_id=saga.order_id, location_id=reply.location_id),
        OrderPickedUp(order_id=saga.order_id, fulfillment_order_id=reply.fulfillment_order_id,
                      store_id=reply.location_id),
    ]
    capture = _capture(saga, reply.fulfillment_order_id, reply.amounts)
    return _after_part(collected, messages + capture + _too_late(saga, "ALREADY_PICKED_UP"))


def _delivered(saga: Saga, reply: DeliveryConfirmed) -> Step:
    return _after_part(saga.with_part(reply.location_id, ["shipped"], status="delivered"), [])


def _rejected(saga: Saga, reply: FulfillmentRejected) -> Step:
    """The location will not fill the part, or (a short pick) the rest of it: that rest is re-sourced. A pickup
    order is cancelled instead: the customer comes to this store."""
    if isinstance(saga.delivery, PickupInStore):
        closed = saga.with_part(reply.location_id, LIVE, status="withdrawn")
        return _cancel(closed, ReasonCode(code="PICKUP_REJECTED", detail=reply.reason.code))
    part = saga.parts[_part_index(saga, reply.location_id, ("requested", "open", "partially_shipped"))]
    if part.status != "partially_shipped":
        return _move(saga.with_part(reply.location_id, [part.status], status="rejected"), reply.location_id)
    rest = tuple(reply.lines) or part.lines  # a location that says nothing of the rest gives up all it had
    shipped = saga.with_part(reply.location_id, ["partially_shipped"], status="shipped")
    return _move(replace(shipped, parts=(*shipped.parts, Part(reply.location_id, rest, "rejected"))),
                 reply.location_id)


def _not_collected(saga: Saga, reply: PickupExpired) -> Step:
    closed = saga.with_part(reply.location_id, ["ready_for_pickup"], status="withdrawn")
    return _cancel(closed, ReasonCode(code="NOT_COLLECTED", detail=f"ready since {reply.ready_since:%Y-%m-%d}"))


def _withdrawn(saga: Saga, reply: FulfillmentCancelled) -> Step:
    """Withdrawn as the order is cancelled; or, outside a cancellation (the location let go of it on its own),
    only its lines are cancelled."""
    if saga.state == "cancelling":
        return _after_part(saga.with_part(reply.location_id, LIVE, status="cancelled"), [])
    part = saga.parts[_part_index(saga, reply.location_id, LIVE)]
    withdrawn = saga.with_part(reply.location_id, LIVE, status="withdrawn")
    if not withdrawn.parts_in(*LIVE, *HANDED_OVER, *TO_MOVE) and not withdrawn.plan:
        return _cancel(withdrawn, ReasonCode(code="WITHDRAWN", detail=f"by {reply.location_id}"))
    cancelled = _lines_cancelled(withdrawn, part.lines, ReasonCode(code="WITHDRAWN"), location_id=reply.location_id)
    return _after_part(cancelled.saga, cancelled.messages)


def _after_part(saga: Saga, messages: list[Contract]) -> Step:
    """A part moved: a cancellation finishes once no part is left to withdraw; a sourcing step under way goes on
    (`fulfilling` ends with its last requested part); otherwise rejected parts are re-sourced, or the order's
    state follows its parts."""
    if saga.state == "cancelling":
        step = _finish_cancel(saga) if not saga.parts_in(*LIVE) else Step(saga)
    elif saga.state in SOURCING and (saga.state != "fulfilling" or saga.parts_in("requested")):
        step = Step(saga)
    elif saga.parts_in("rejected"):
        step = _wait(replace(saga, state="reallocating"))
    else:
        step = _follow_parts(saga)
    return Step(step.saga, messages + step.messages)


def _follow_parts(saga: Saga) -> Step:
    """The order's state follows its parts; the last part delivered delivers the order (OrderDelivered), also
    when it is the rest of the order that was cancelled after it."""
    state = _derived_state(saga)
    following = replace(saga, state=state, attempts=0)
    if state != "delivered" or saga.state == "delivered":
        return Step(following)
    last = saga.parts_in("delivered")[-1]
    return Step(following, [OrderDelivered(order_id=saga.order_id, fulfillment_order_id=saga.fulfillment_order(last))])


def _derived_state(saga: Saga) -> str:
    parts = [part.status for part in saga.parts if part.status not in GONE]
    if parts and all(status == "delivered" for status in parts):
        return "delivered"
    if parts and all(status in ("shipped", "delivered") for status in parts):
        return "shipped"
    if "picked_up" in parts:
        return "picked_up"
    if any(status in HANDED_OVER for status in parts):
        return "partially_shipped"
    if "ready_for_pickup" in parts:
        return "ready_for_pickup"
    return "awaiting_shipment"


def _all_shipped(saga: Saga) -> bool:
    return not saga.parts_in(*LIVE, *TO_MOVE, "partially_shipped")


def _move(saga: Saga, failed_location: str) -> Step:
    """Re-source a rejected part: now, or once the step under way is done; while other parts are being un-pinned,
    it is un-pinned at once too (that step asks only for the parts rejected when it began)."""
    moved = replace(saga, excluded_locations=(*saga.excluded_locations, failed_location))
    if moved.state == "reallocating":
        return Step(moved, [DeallocateReservation(order_id=saga.order_id, location_id=failed_location)])
    return _after_part(moved, [])


def _try_elsewhere(saga: Saga, failed_location: str, then: str = "routing") -> Step:
    tried = replace(saga, excluded_locations=(*saga.excluded_locations, failed_location))
    if len(tried.excluded_locations) >= MAX_LOCATION_ATTEMPTS:
        return _give_up_sourcing(tried, ReasonCode(
            code="NO_ROUTE", detail=f"tried and failed at {', '.join(tried.excluded_locations)}"))
    return _wait(replace(tried, state=then))


def _give_up_sourcing(saga: Saga, reason: ReasonCode) -> Step:
    """No location for the lines being sourced: the order is cancelled, or, when other parts of it are served,
    only those lines."""
    if not saga.parts_in(*LIVE, *HANDED_OVER):
        return _cancel(saga, reason)
    dropped = replace(saga, state="fulfilling", plan=(), parts=tuple(
        replace(part, status="dropped") if part.status == "moving" else part for part in saga.parts))
    cancelled = _lines_cancelled(dropped, saga.sourcing(), reason)
    return _after_part(cancelled.saga, cancelled.messages)


def _lines_cancelled(saga: Saga, lines: Iterable[Line], reason: ReasonCode,
                     location_id: str | None = None) -> Step:
    lines = merge_lines(list(lines))
    off = _off_the_order(saga, lines, reason)
    release = ReleaseReservation(order_id=saga.order_id, reason=reason.code, lines=lines, location_id=location_id)
    return Step(off.saga, [release, *off.messages])


def _off_the_order(saga: Saga, lines: list[Line], reason: ReasonCode) -> Step:
    """Lines the OMS could not fill leave the order: its lines and totals shrink (a line keeping some units keeps
    that share of its discount and tax), the channel is told the new totals (OrderLinesCancelled) and the
    authorisation follows the new total."""
    told = OrderLinesCancelled(order_id=saga.order_id, lines=lines, reason=reason)
    placed = without_lines(saga.placed, lines) if saga.placed else None
    if not isinstance(placed, dict) or not placed["lines"]:
        return Step(saga, [told])
    order = PlaceOrder.model_validate(placed)
    totals = order.computed_totals()
    shrunk = replace(saga, placed=placed, placed_changed=True, order_value=order_value(order.lines),
                     lines=tuple(Line(sku=line.sku, quantity=line.quantity) for line in order.lines))
    told = told.model_copy(update={"totals": totals, "amount_due": totals.total - captured(saga)})
    adjustment = uuid5(saga.order_id, json.dumps([saga.placed["lines"], placed["lines"]], sort_keys=True))
    adjusted = _adjust_authorization(shrunk, saga, f"lines-cancelled:{adjustment}", totals.total)
    return Step(adjusted.saga, [told, *adjusted.messages])


def _handed_over(saga: Saga, lines: Iterable[Line], at: datetime) -> Saga:
    return replace(saga, shipped=tuple(merge_lines([*saga.shipped, *lines])),
                   handed_over_at=max(at, saga.handed_over_at) if saga.handed_over_at else at)


def _capture(saga: Saga, capture_id: UUID, amounts: ShipmentAmounts | None) -> list[Contract]:
    """A shipment (or a pickup's goods issue) is paid for: its amount captured against the authorisation."""
    authorization = saga.placed.get("payment")
    if not authorization or amounts is None:
        return []
    return [CapturePayment(order_id=saga.order_id, capture_id=capture_id, provider=authorization["provider"],
                           authorization_reference=authorization["reference"], amount=amounts.total,
                           currency=amounts.currency, lines=amounts.lines)]


def settle_return(saga: Saga, return_id: str, returned: ShipmentAmounts, difference: Decimal | None) -> list[Contract]:
    """A received return is paid back against the order's authorisation: all of it, or for an exchange only the
    difference — refunded when the replacement costs less, charged when it costs more."""
    authorization = saga.placed.get("payment")
    if not authorization:
        return []
    payment = {"order_id": saga.order_id, "provider": authorization["provider"],
               "authorization_reference": authorization["reference"], "currency": returned.currency,
               "lines": returned.lines}
    if difference is None:
        return [RefundPayment(**payment, refund_id=return_id, amount=returned.total)]
    if difference > 0:
        return [CapturePayment(**payment, capture_id=uuid5(saga.order_id, f"exchange:{return_id}"),
                               amount=difference)]
    return [RefundPayment(**payment, refund_id=return_id, amount=-difference)] if difference < 0 else []


def _void(saga: Saga) -> list[Contract]:
    """The order is cancelled: what is left of the authorisation is released."""
    authorization = saga.placed.get("payment")
    if not authorization or saga.voided:
        return []
    left = max(Decimal(str(authorization["amount"])) - captured(saga), Decimal(0))
    return [VoidAuthorization(order_id=saga.order_id, provider=authorization["provider"],
                              authorization_reference=authorization["reference"], amount=left,
                              currency=saga.placed["currency"])]


def captured(saga: Saga) -> Decimal:
    return sum((amount for _, amount in saga.captures), Decimal(0))


def _too_late(saga: Saga, code: str) -> list[Contract]:
    """A customer's cancellation that a handover overtook is answered."""
    if saga.state == "cancelling" and saga.cancel_reason and saga.cancel_reason.code == CUSTOMER_CANCELLED:
        return [_cancellation_rejected(saga, code)]
    return []


# --- edits: change lines or delivery before anything is picked -------------------------------------------------

EDITABLE = ("held", "awaiting_shipment", "partially_shipped")


def request_edit(saga: Saga, edit_id: str, placed: dict) -> Step:
    """An edit: the order as it is to stand (`placed`). Units removed are released where they are (the
    fulfilment orders shrink in place); units added are reserved first, and then, like a new delivery, the
    open parts are withdrawn and the order's units routed anew together (a unit added should not force a
    second parcel, and a split chosen for the old address may be wrong for the new). What a split handed over
    already stays as it is: only the open parts change. Refused, with nothing changed, when it would take off
    units picked, shipped or collected, once the order is cancelled, or while another step is under way."""
    if refusal := _edit_refusal(saga):
        return Step(saga, [_edit_refused(saga, edit_id, refusal)])
    lines = [Line(sku=line["sku"], quantity=line["quantity"]) for line in placed["lines"]]
    edit = Edit(edit_id, placed, previous_state=saga.state, added=tuple(_minus(lines, saga.lines)),
                removed=tuple(_minus(saga.lines, lines)), rerouted=placed["delivery"] != saga.placed.get("delivery"))
    open_units = [line for served in (*saga.parts_in(*LIVE), *saga.plan) for line in served.lines]
    if beyond := _minus(edit.removed, open_units):
        return Step(saga, [_edit_refused(saga, edit_id, "ALREADY_SHIPPED", "handed over already: " + ", ".join(
            f"{line.quantity} {line.sku}" for line in beyond))])
    editing = replace(saga, edit=edit)
    if edit.added:
        return _wait(replace(editing, state="extending"))
    return _amend(editing)


def _edit_refusal(saga: Saga) -> str | None:
    if saga.state in ("cancelled", "cancelling"):
        return "ALREADY_CANCELLED"
    if saga.state in ("shipped", "delivered", "picked_up"):
        return "ALREADY_SHIPPED"
    if saga.state == "ready_for_pickup":
        return "ALREADY_PICKED"
    if saga.state not in EDITABLE or saga.edit is not None:
        return "ORDER_BUSY"
    return None


def _minus(lines: Iterable[Line], other: Iterable[Line]) -> list[Line]:
    """Per SKU, the units of `lines` beyond those of `other`."""
    theirs = {line.sku: line.quantity for line in merge_lines(list(other))}
    return [Line(sku=line.sku, quantity=line.quantity - theirs.get(line.sku, 0))
            for line in merge_lines(list(lines)) if line.quantity > theirs.get(line.sku, 0)]


def _amend(saga: Saga) -> Step:
    """Ask fulfilment to change the open parts, all or none (each, unchanged ones too, takes the new charges;
    none may be picked), or, with none open (a held order), apply."""
    amendments = tuple(PartAmendment(fulfillment_order_id=saga.fulfillment_order(part), location_id=part.location_id,
                                     lines=[] if _resourced(saga.edit) else kept)
                       for part, kept in _what_each_keeps(saga) if isinstance(part, Part))
    if not amendments:
        return _apply_edit(saga)
    return _wait(replace(saga, state="amending", edit=replace(saga.edit, amendments=amendments)))


def _resourced(edit: Edit) -> bool:
    return bool(edit.added) or edit.rerouted


def _what_each_keeps(saga: Saga) -> list[tuple[Part | Assignment, list[Line]]]:
    """Each open part, then each assignment of a pinned plan, with what it keeps of the edited order: the units
    removed come off the last ones first (each unit once, wherever it is)."""
    left = {line.sku: line.quantity for line in saga.edit.removed}
    kept = []
    for part in reversed([*saga.parts_in(*LIVE), *saga.plan]):
        lines = []
        for line in part.lines:
            off = min(left.get(line.sku, 0), line.quantity)
            left[line.sku] = left.get(line.sku, 0) - off
            if line.quantity > off:
                lines.append(Line(sku=line.sku, quantity=line.quantity - off))
        kept.append((part, lines))
    return kept[::-1]


def _amended(saga: Saga, reply: FulfillmentAmended) -> Step:
    return _apply_edit(saga)


def _apply_edit(saga: Saga) -> Step:
    """The edit holds: the order stands as edited (OrderEdited), removed units are released where they are
    (ReleaseReservation), the authorisation follows the new total (AdjustAuthorization); re-sourced parts are
    un-pinned and routed anew with the units added, a held order's pinned plan likewise."""
    edit = saga.edit
    parts, plan, releases = list(saga.parts), [], []
    for served, kept in _what_each_keeps(saga):
        releases += _release_removed(saga, served.location_id, served.lines, kept)
        if isinstance(served, Part):
            status = ("rejected" if _resourced(edit) else served.status) if kept else "withdrawn"
            parts[parts.index(served)] = replace(served, lines=tuple(kept), status=status)
        elif _resourced(edit) and kept:  # pinned there, never requested: un-pinned to be routed anew
            parts.append(Part(served.location_id, tuple(kept), "rejected",
                              round=sum(part.location_id == served.location_id for part in parts)))
        elif kept:
            plan.append(Assignment(location_id=served.location_id, lines=kept, location_kind=served.location_kind))
    placed = edit.placed
    edited = replace(saga, parts=tuple(parts), plan=tuple(plan), edit=None, placed=placed, placed_changed=True,
                     lines=tuple(Line(sku=line["sku"], quantity=line["quantity"]) for line in placed["lines"]),
                     delivery=_DELIVERY.validate_python(placed["delivery"]),
                     order_value=order_value(PricedLine.model_validate(line) for line in placed["lines"]),
                     unplaced=edit.added)
    order = PlaceOrder.model_validate(placed)
    totals = order.computed_totals()
    told = OrderEdited(order_id=saga.order_id, channel=saga.channel, channel_order_id=saga.channel_order_id,
                       edit_id=edit.edit_id, lines=order.lines, currency=order.currency, delivery=order.delivery,
                       added=list(edit.added), removed=list(edit.removed), rerouted=edit.rerouted, totals=totals,
                       captured=captured(saga), amount_due=totals.total - captured(saga))
    adjusted = _adjust_authorization(edited, saga, edit.edit_id, totals.total)
    step = _resume(adjusted.saga, edit.previous_state)
    return Step(step.saga, [*releases, told, *adjusted.messages, *step.messages])


def _release_removed(saga: Saga, location_id: str, lines: Iterable[Line], kept: list[Line]) -> list[Contract]:
    removed = _minus(lines, kept)
    return [ReleaseReservation(order_id=saga.order_id, reason="EDITED", lines=removed,
                               location_id=location_id)] if removed else []


def _adjust_authorization(edited: Saga, before: Saga, edit_id: str, total: Decimal) -> Step:
    """The authorisation follows the order's new total (what is captured counts against it, as before)."""
    authorization = edited.placed.get("payment")
    if not authorization or Decimal(str(authorization["amount"])) == total:
        return Step(edited)
    previous = Decimal(str(before.placed["payment"]["amount"]))
    placed = {**edited.placed, "payment": {**authorization, "amount": str(total)}}
    return Step(replace(edited, placed=placed), [AdjustAuthorization(
        order_id=edited.order_id, adjustment_id=edit_id, provider=authorization["provider"],
        authorization_reference=authorization["reference"], amount=total, previous_amount=previous,
        currency=edited.placed["currency"])])


def _resume(saga: Saga, previous_state: str) -> Step:
    """After an edit (applied or refused): re-source what it withdrew or added, or carry on where it was."""
    if saga.parts_in("rejected"):
        return _wait(replace(saga, state="reallocating"))
    if saga.parts_in("moving") or saga.unplaced:
        return _wait(replace(saga, state="routing"))
    if previous_state == "held":
        return Step(replace(saga, state="held", attempts=0)) if saga.holds else _release_to_fulfilment(saga)
    return _follow_parts(saga)


def _extended(saga: Saga, reply: ReservationExtended) -> Step:
    return _amend(saga)


def _extension_refused(saga: Saga, reply: ReservationExtensionRefused) -> Step:
    return _refuse_edit(saga, reply.reason, release_added=False)


def _amendment_refused(saga: Saga, reply: FulfillmentAmendmentRefused) -> Step:
    return _refuse_edit(saga, reply.reason, release_added=True)


def _refuse_edit(saga: Saga, reason: ReasonCode, release_added: bool) -> Step:
    """Nothing of the edit is applied: units already added to the reservation are given back."""
    edit = saga.edit
    undo = [ReleaseReservation(order_id=saga.order_id, reason="EDIT_REFUSED", lines=list(edit.added))] \
        if release_added and edit.added else []
    step = _resume(replace(saga, edit=None), edit.previous_state)
    return Step(step.saga, [*undo, _edit_refused(saga, edit.edit_id, reason.code, reason.detail), *step.messages])


def _edit_refused(saga: Saga, edit_id: str, code: str, detail: str = "") -> OrderEditRefused:
    return OrderEditRefused(order_id=saga.order_id, channel=saga.channel, channel_order_id=saga.channel_order_id,
                            edit_id=edit_id, reason=ReasonCode(code=code, detail=detail))


def _extend(saga: Saga) -> ExtendReservation:
    return ExtendReservation(order_id=saga.order_id, edit_id=saga.edit.edit_id, lines=list(saga.edit.added))


def _amend_fulfilment(saga: Saga) -> AmendFulfillment:
    return AmendFulfillment(order_id=saga.order_id, edit_id=saga.edit.edit_id, parts=list(saga.edit.amendments),
                            billing=billing(saga, saga.edit.placed))


# --- payments and holds ---------------------------------------------------------------------------------------

def _paid(saga: Saga, reply: PaymentCaptured) -> Step:
    if any(capture_id == str(reply.capture_id) for capture_id, _ in saga.captures):
        return Step(saga)
    return Step(replace(saga, captures=(*saga.captures, (str(reply.capture_id), reply.amount))))


def _payment_failed(saga: Saga, reply: PaymentCaptureFailed) -> Step:
    """Nothing more goes to fulfilment until a person has looked at the payment."""
    return hold(saga, Hold(reason="payment_capture_failed", placed_by="payments",
                           note=f"capture {reply.capture_id}: {reply.reason.code}"))


def _voided(saga: Saga, reply: AuthorizationVoided) -> Step:
    return Step(replace(saga, voided=True))


def _adjustment_failed(saga: Saga, reply: AuthorizationAdjustmentFailed) -> Step:
    """An edit raised the total and the provider would not authorise it: a person looks at the payment."""
    return hold(saga, Hold(reason="payment_review", placed_by="payments",
                           note=f"edit {reply.adjustment_id}: {reply.reason.code}"))


def hold(saga: Saga, new: Hold) -> Step:
    """Put the order on hold (a hold of the same reason is replaced). Refused once everything is handed over
    or the order is cancelled."""
    if refusal := _hold_refusal(saga):
        return Step(saga, [refusal])
    holds = (*(h for h in saga.holds if h.reason != new.reason), new)
    return Step(replace(saga, holds=holds), [OrderHeld(order_id=saga.order_id, hold=new)])


def release_hold(saga: Saga, reason: str, released_by: str) -> Step:
    """Lift one hold; the last one lifted releases a held order to fulfilment."""
    if not any(h.reason == reason for h in saga.holds):
        return Step(saga, [_hold_refused(saga, "NOT_HELD")])
    released = replace(saga, holds=tuple(h for h in saga.holds if h.reason != reason))
    told = OrderHoldReleased(order_id=saga.order_id, reason=reason, released_by=released_by)
    if released.state != "held" or released.holds:
        return Step(released, [told])
    step = _release_to_fulfilment(released)
    return Step(step.saga, [told, *step.messages])


def _hold_refusal(saga: Saga) -> OrderHoldRefused | None:
    if saga.state == "cancelled":
        return _hold_refused(saga, "ALREADY_CANCELLED")
    if saga.state in ("shipped", "delivered", "picked_up"):
        return _hold_refused(saga, "ALREADY_SHIPPED")
    return None


def _hold_refused(saga: Saga, code: str) -> OrderHoldRefused:
    return OrderHoldRefused(order_id=saga.order_id, channel=saga.channel, channel_order_id=saga.channel_order_id,
                            reason=ReasonCode(code=code))


def _holds_lapse(saga: Saga, now: datetime) -> Step:
    """A held order's deadline is its first hold's expiry: the holds that expired are released."""
    step = Step(saga)
    for lapsed in [h for h in saga.holds if h.expires_at is not None and h.expires_at <= now]:
        released = release_hold(step.saga, lapsed.reason, "expiry")
        step = Step(released.saga, step.messages + released.messages)
    return step


def hold_deadline(saga: Saga) -> datetime | None:
    """When a held order next has a hold to lapse."""
    return min((h.expires_at for h in saga.holds if h.expires_at is not None), default=None)


# --- the declarations -----------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Then:
    """What a reply does to the saga, and (for the table) where that leads."""

    apply: Callable[[Saga, Contract], Step]
    leads_to: str


@dataclass(frozen=True)
class SagaStep:
    state: str
    replies: dict[type[Contract], Then]
    command: Callable[[Saga], Contract | list[Contract]] | None = None  # None: waits, with no deadline
    compensation: str | None = None  # registered before the command is first sent
    gives_up: bool = True  # after MAX_STEP_ATTEMPTS sends without an answer


CANCELLED = "cancelled: run the compensations, OrderCancelled"
EXPIRED = Then(_expired, "cancelled (RESERVATION_EXPIRED): run the compensations, OrderCancelled")
GIVE_UP = ("cancelled: run the compensations, OrderCancelled (re-sourcing a part: only its lines, "
           "OrderLinesCancelled)")
STEPS = (
    SagaStep("reserving", command=_reserve, compensation=RELEASE, replies={
        StockReserved: Then(_reserved, "routing: RouteOrder (where inventory has asked routing itself, "
                                       "ReserveStock's `route`, it is not read: the answers below come)"),
        StockBackordered: Then(_backordered, "backordered: OrderBackordered (the channel let it wait)"),
        StockUnavailable: Then(_unavailable, CANCELLED),
        ReservationAllocated: Then(_pinned_by_routing, "inventory's answer to the pinning routing asked for, "
                                                       "which names the plan: as from allocating"),
        AllocationFailed: Then(_short_on_first_sourcing, "the chosen location is short (LOCATION_SHORT): "
                                                         "ReserveStock again without it (at most 3 tried); then "
                                                         "as no route"),
        RouteNotFound: Then(_no_route, CANCELLED),
        ReservationExpired: EXPIRED}),
    SagaStep("backordered", replies={
        StockReserved: Then(_reserved, "routing: RouteOrder (arrivals covered it, in its turn)")}),
    SagaStep("routing", command=_route, replies={
        OrderRouted: Then(_routed, "allocating: AllocateReservation at the chosen location(s) (on the first "
                                   "sourcing routing has asked for it, and the decision is not read: inventory's "
                                   "answer names the plan)"),
        RouteNotFound: Then(_no_route, GIVE_UP),
        ReservationAllocated: Then(_pinned_by_routing, "first sourcing, inventory's answer to the pinning routing "
                                                       "asked for (which names the plan): as from allocating"),
        AllocationFailed: Then(_allocation_failed, "first sourcing, the chosen location is short (LOCATION_SHORT): "
                                                   "as from allocating"),
        ReservationExpired: EXPIRED}),
    SagaStep("allocating", command=_allocate, replies={
        ReservationAllocated: Then(_allocated, "fulfilling: a part per location, then RequestFulfillment for each"),
        AllocationFailed: Then(_allocation_failed, "routing: RouteOrder without that location (at most 3 tried); "
                                                   "then as no route"),
        ReservationExpired: EXPIRED}),
    SagaStep("fulfilling", command=_request_fulfilment, replies={}),
    SagaStep("reallocating", command=_deallocate, replies={
        ReservationDeallocated: Then(_deallocated, "routing (once every rejected part is un-pinned): RouteOrder "
                                                   "for their lines, without the locations tried or serving"),
        ReservationExpired: EXPIRED}),
    SagaStep("held", replies={}),
    SagaStep("extending", command=_extend, gives_up=False, replies={
        ReservationExtended: Then(_extended, "amending: AmendFulfillment of the open parts (a held order: "
                                             "applied at once)"),
        ReservationExtensionRefused: Then(_extension_refused, "where it was: OrderEditRefused (OUT_OF_STOCK)")}),
    SagaStep("amending", command=_amend_fulfilment, gives_up=False, replies={
        FulfillmentAmended: Then(_amended, "applied: OrderEdited, ReleaseReservation of removed units where they "
                                           "were, AdjustAuthorization; re-sourced parts (units added, a new "
                                           "delivery): reallocating, as a rejection"),
        FulfillmentAmendmentRefused: Then(_amendment_refused, "where it was: OrderEditRefused (ALREADY_PICKED), "
                                                              "added units released")}),
    SagaStep("cancelling", command=_withdraw_fulfilment, gives_up=False, replies={}),
)
SOURCING = frozenset({"reserving", "backordered", "routing", "allocating", "fulfilling", "reallocating", "held",
                      "extending", "amending"})
# A payment service's answers, whatever the order's step.
PAYMENT_REPLIES = {
    PaymentCaptured: Then(_paid, "the capture counted once (by capture id) towards what is paid"),
    PaymentCaptureFailed: Then(_payment_failed, "on hold (payment_capture_failed): OrderHeld; nothing more "
                                                "released to fulfilment until released"),
    AuthorizationVoided: Then(_voided, "voided"),
    AuthorizationAdjusted: Then(lambda saga, reply: Step(saga), "the order's timeline only"),
    AuthorizationAdjustmentFailed: Then(_adjustment_failed, "on hold (payment_review): OrderHeld"),
}


@dataclass(frozen=True)
class PartStep:
    status: str
    replies: dict[type[Contract], Then]


PART_STEPS = (
    PartStep("requested", {
        FulfillmentOrderCreated: Then(_created, "open: OrderConfirmed; the last one ends `fulfilling`"),
        FulfillmentRejected: Then(_rejected, "rejected: re-sourced (`reallocating`: DeallocateReservation); "
                                             "a pickup order: cancelled, PICKUP_REJECTED"),
        FulfillmentCancelled: Then(_withdrawn, "withdrawn (asked by `cancelling`)")}),
    PartStep("open", {
        FulfillmentOrderProgressed: Then(_progressed, "picked, packed: OrderProgressed (for the channel); ready for "
                                                      "pickup: ready_for_pickup, OrderReadyForPickup"),
        ShipmentConfirmed: Then(_shipped, "shipped (part of it: partially_shipped): CommitReservation there, "
                                          "OrderShipped (complete once every part is)"),
        FulfillmentRejected: Then(_rejected, "rejected: re-sourced; a pickup order: cancelled, PICKUP_REJECTED"),
        FulfillmentCancelled: Then(_withdrawn, "withdrawn; outside `cancelling`: ReleaseReservation of its "
                                               "lines, OrderLinesCancelled")}),
    PartStep("ready_for_pickup", {
        PickupCompleted: Then(_picked_up, "picked_up: CommitReservation, OrderPickedUp"),
        PickupExpired: Then(_not_collected, "withdrawn; the order cancelled, NOT_COLLECTED (stock back on the "
                                            "shelf)"),
        FulfillmentRejected: Then(_rejected, "withdrawn; the order cancelled, PICKUP_REJECTED"),
        FulfillmentCancelled: Then(_withdrawn, "withdrawn (asked by `cancelling`)")}),
    PartStep("partially_shipped", {
        ShipmentConfirmed: Then(_shipped, "partially_shipped, or shipped with its last parcel: CommitReservation "
                                          "there, OrderShipped"),
        FulfillmentRejected: Then(_rejected, "shipped (short pick): the rest becomes a rejected part, "
                                             "re-sourced")}),
    PartStep("shipped", {
        DeliveryConfirmed: Then(_delivered, "delivered: OrderDelivered once every part is")}),
)
PART_STATUSES_FOR = {reply: [step.status for step in PART_STEPS if reply in step.replies]
                     for part_step in PART_STEPS for reply in part_step.replies}
STEP_OF = {step.state: step for step in STEPS}
TRANSITIONS = {(step.state, reply): then.apply for step in STEPS for reply, then in step.replies.items()}
PART_TRANSITIONS = {(step.status, reply): then.apply for step in PART_STEPS for reply, then in step.replies.items()}
REPLY_TYPES = frozenset(reply for _, reply in TRANSITIONS) | frozenset(PART_STATUSES_FOR) | frozenset(PAYMENT_REPLIES)
# Replies not read when this field is true: the saga awaits another's answer instead (the consumer skips them).
ANSWERED_ELSEWHERE = {StockReserved: "routing_requested", OrderRouted: "allocation_requested"}
WAITING = frozenset(step.state for step in STEPS if step.command)  # the states with a deadline


README_TABLE_START = "<!-- saga table: generated from services/capture/saga.py STEPS (saga.table()) -->\n"
README_TABLE_END = "\n<!-- end of saga table -->"


def table() -> str:
    """The saga as the README shows it (between README_TABLE_START and README_TABLE_END; `oms asyncapi` puts it
    there): the order's sourcing steps, then a fulfilment order's life."""
    order = [f"| {f'`{step.state}`' if first else ''} | {_sends(step) if first else ''} | {reply} | {leads_to} |"
             for step in STEPS for first, reply, leads_to in _rows(step.replies)]
    part = [f"| {f'`{step.status}`' if first else ''} | {reply} | {leads_to} |"
            for step in PART_STEPS for first, reply, leads_to in _rows(step.replies)]
    payment = [f"| `{reply.__name__}` | {then.leads_to} |" for reply, then in PAYMENT_REPLIES.items()]
    return "\n".join(["| state | sends (again on its deadline) | reply | leads to |", "|---|---|---|---|", *order,
                      "", "A fulfilment order (a part of the order), whatever the order's step:", "",
                      "| part | reply from its location | leads to |", "|---|---|---|", *part,
                      "", "The payment service, whatever the order's step:", "",
                      "| reply | leads to |", "|---|---|", *payment])


def _rows(replies: dict[type[Contract], Then]) -> list[tuple[bool, str, str]]:
    if not replies:
        return [(True, "—", "the parts' replies (below)")]
    return [(i == 0, f"`{reply.__name__}`", then.leads_to) for i, (reply, then) in enumerate(replies.items())]


def _sends(step: SagaStep) -> str:
    if step.command is None:
        return "— (waits)"
    sent = get_type_hints(step.command)["return"]
    name = sent.__args__[0].__name__ + " per part" if getattr(sent, "__args__", None) else sent.__name__
    registers = f", registering `{step.compensation}` first" if step.compensation else ""
    forever = ", never gives up" if not step.gives_up else ""
    return f"`{name}`{registers}{forever}"


def advance(saga: Saga, reply: Contract) -> Step | None:
    """The next step for this reply, or None when the current state (or the part it names) does not expect it,
    or the reply names a location or fulfilment order that is not the saga's."""
    if type(reply) in PAYMENT_REPLIES:
        return PAYMENT_REPLIES[type(reply)].apply(saga, reply)
    if type(reply) in PART_STATUSES_FOR:
        part = _part_for(saga, reply)
        return PART_TRANSITIONS[(part.status, type(reply))](saga, reply) if part else None
    transition = TRANSITIONS.get((saga.state, type(reply)))
    return transition(saga, reply) if transition and claims_hold(saga, reply) else None


def _part_for(saga: Saga, reply: Contract) -> Part | None:
    """The part a location's reply is about: at that location, in a status that accepts it, and named by its
    own fulfilment order id."""
    if saga.state == "cancelled":
        return None
    statuses = PART_STATUSES_FOR[type(reply)]
    return next((part for part in saga.parts if part.location_id == reply.location_id and part.status in statuses
                 and saga.fulfillment_order(part) == reply.fulfillment_order_id), None)


def claims_hold(saga: Saga, reply: Contract) -> bool:
    """A sourcing reply names the location the saga asked about; on the order's first sourcing (reserving, or
    routing), one routing asked for (a decision made again on a deadline may have been pinned first: a location
    that cannot pin because the units are pinned elsewhere, or one found short already, changes nothing)."""
    if isinstance(reply, (ReservationAllocated, AllocationFailed)) and saga.state in ("reserving", "routing"):
        pinned_or_newly_short = isinstance(reply, ReservationAllocated) or (
            reply.reason.code == "LOCATION_SHORT" and reply.location_id not in saga.excluded_locations)
        return _routing_pins(saga) and pinned_or_newly_short
    if isinstance(reply, ReservationAllocated):
        return bool(saga.plan) and reply.location_id == saga.plan[0].location_id
    if isinstance(reply, AllocationFailed):
        return reply.location_id in {a.location_id for a in saga.plan}
    if isinstance(reply, ReservationDeallocated):
        return any(part.location_id == reply.location_id for part in saga.parts_in("rejected"))
    if isinstance(reply, (ReservationExtended, ReservationExtensionRefused, FulfillmentAmended,
                          FulfillmentAmendmentRefused)):
        return saga.edit is not None and reply.edit_id == saga.edit.edit_id
    return True


def request_cancel(saga: Saga, reason: str) -> Step:
    """The channel asks to cancel: honoured before anything is handed over, answered with a rejection after."""
    if saga.state == "picked_up":
        return Step(saga, [_cancellation_rejected(saga, "ALREADY_PICKED_UP")])
    if saga.parts_in(*HANDED_OVER):
        return Step(saga, [_cancellation_rejected(saga, "ALREADY_SHIPPED")])
    if saga.state == "cancelled":
        return Step(saga, [_cancellation_rejected(saga, "ALREADY_CANCELLED")])
    if saga.state == "cancelling":
        return Step(saga)
    return _cancel(saga, ReasonCode(code=CUSTOMER_CANCELLED, detail=reason))


def on_timeout(saga: Saga, now: datetime | None = None) -> Step:
    """The current step's deadline passed: ask again, or give up and compensate; a held order's holds lapse."""
    if saga.state == "held":
        return _holds_lapse(saga, now or datetime.now(UTC))
    if not pending_commands(saga):
        return _resume(replace(saga, attempts=0), saga.state)
    if not STEP_OF[saga.state].gives_up or saga.attempts < MAX_STEP_ATTEMPTS:
        return _wait(saga, again=True)
    command = pending_commands(saga)[0]
    return _cancel(saga, ReasonCode(code="STEP_TIMEOUT",
                                    detail=f"no answer to {command.message_type} after {saga.attempts} tries"))


def pending_commands(saga: Saga) -> list[Contract]:
    """The command(s) a waiting state has sent and waits on; sent again on timeout."""
    step = STEP_OF.get(saga.state)
    if step is None or step.command is None:
        raise ValueError(f"state {saga.state} waits for nothing")
    sent = step.command(saga)
    return sent if isinstance(sent, list) else [sent]


def _wait(saga: Saga, *, again: bool = False) -> Step:
    """Enter (or stay in) a step: register its compensation, then send its command(s)."""
    compensation = STEP_OF[saga.state].compensation
    if compensation and compensation not in saga.compensations:
        saga = replace(saga, compensations=(*saga.compensations, compensation))
    waiting = replace(saga, attempts=saga.attempts + 1 if again else 1, sent=True)
    commands = pending_commands(waiting)
    if not commands:  # an edit or a hold took away what the step was for: on to what the parts need
        return _resume(replace(waiting, attempts=0), waiting.state)
    return Step(waiting, commands)


def _cancel(saga: Saga, reason: ReasonCode) -> Step:
    """Cancel (an edit under way is refused: the order is going). Re-sourced lines whose allocation has not
    answered may be pinned at the new location by now: they are un-pinned first, so that the release of only those
    lines (the order keeps its other parts) finds them held either way; without other parts, the whole
    reservation is released, pins and all."""
    cancelling = replace(saga, cancel_reason=reason, cancel_stage=saga.state, plan=(), edit=None)
    told = [_edit_refused(saga, saga.edit.edit_id, "ALREADY_CANCELLED")] if saga.edit else []
    unpinned = [DeallocateReservation(order_id=saga.order_id, location_id=assignment.location_id)
                for assignment in saga.plan] if saga.state == "allocating" and saga.parts else []
    step = _wait(replace(cancelling, state="cancelling")) if saga.parts_in(*LIVE) else _finish_cancel(cancelling)
    return Step(step.saga, told + unpinned + step.messages)


def _finish_cancel(saga: Saga) -> Step:
    """Nothing left to withdraw. Nothing handed over: the order is cancelled. Otherwise it keeps what was handed
    over and only the rest is cancelled."""
    if saga.parts_in(*HANDED_OVER):
        return _keep_what_was_handed_over(saga)
    messages: list[Contract] = []
    if RELEASE in saga.compensations:
        messages.append(ReleaseReservation(order_id=saga.order_id, reason=saga.cancel_reason.code))
    messages.append(OrderCancelled(order_id=saga.order_id, reason=saga.cancel_reason, stage=saga.cancel_stage))
    messages += _void(saga)
    return Step(replace(saga, state="cancelled", compensations=(), attempts=0, holds=()), messages)


def _keep_what_was_handed_over(saga: Saga) -> Step:
    """A cancellation that a handover overtook: the parts it withdrew, and those waiting to be re-sourced, are
    cancelled (their units released where they are pinned, or held); the order keeps the rest."""
    undone = saga.parts_in("cancelled", *TO_MOVE)
    messages: list[Contract] = [
        ReleaseReservation(order_id=saga.order_id, reason=saga.cancel_reason.code, lines=list(part.lines),
                           location_id=None if part.status == "moving" else part.location_id) for part in undone]
    kept = replace(saga, cancel_reason=None, cancel_stage=None, parts=tuple(
        replace(part, status="dropped") if part in undone else part for part in saga.parts))
    if undone:
        off = _off_the_order(kept, merge_lines([line for part in undone for line in part.lines]), saga.cancel_reason)
        kept, messages = off.saga, messages + off.messages
    followed = _follow_parts(kept)
    return Step(followed.saga, messages + followed.messages)


def _cancellation_rejected(saga: Saga, code: str) -> OrderCancellationRejected:
    return OrderCancellationRejected(order_id=saga.order_id, channel=saga.channel,
                                     channel_order_id=saga.channel_order_id, reason=ReasonCode(code=code))


ORDER_STATUS = {"backordered": "backordered", "held": "on_hold", "awaiting_shipment": "confirmed",
                "ready_for_pickup": "ready_for_pickup",
                "partially_shipped": "partially_shipped", "shipped": "shipped",
                "delivered": "delivered", "picked_up": "picked_up", "cancelled": "cancelled"}
