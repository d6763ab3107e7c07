import uuid
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from shared.contracts.common import Assignment, Line, PickupInStore, ReasonCode, ShipTo
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
    Shortage,
    StockBackordered,
    AllocateReservation,
    AllocationFailed,
    CommitReservation,
    DeallocateReservation,
    LocationAvailability,
    OnwardRouting,
    ReleaseReservation,
    ReservationAllocated,
    ReservationDeallocated,
    ReservationExpired,
    ReserveStock,
    StockReserved,
    StockUnavailable,
)
from shared.contracts.money import ShipmentAmounts
from shared.contracts.orders import (
    Hold,
    OrderBackordered,
    OrderCancellationRejected,
    OrderCancelled,
    OrderConfirmed,
    OrderDelivered,
    OrderHeld,
    OrderHoldReleased,
    OrderLinesCancelled,
    OrderPickedUp,
    OrderProgressed,
    OrderReadyForPickup,
    OrderShipped,
    PricedLine,
)
from shared.contracts.payments import (
    CapturePayment,
    PaymentCaptured,
    PaymentCaptureFailed,
    RefundPayment,
    VoidAuthorization,
)
from shared.contracts.routing import OrderRouted, RouteNotFound, RouteOrder

from ops.demo import address
from ops.env import ROOT
from services.capture import saga as s

ORDER = uuid.uuid4()
LINES = (Line(sku="SKU-1", quantity=2),)


def new_saga() -> s.Saga:
    return s.Saga(order_id=ORDER, state="new", lines=LINES, delivery=ShipTo(address=address()))


def types(step: s.Step) -> list[type]:
    return [type(m) for m in step.messages]


def reserved() -> StockReserved:
    return StockReserved(order_id=ORDER, lines=list(LINES),
                         availability=[LocationAvailability(location_id="WH-1", sku="SKU-1", available=5)])


def through(*replies) -> s.Saga:
    saga = s.start(new_saga()).saga
    for reply in replies:
        saga = s.advance(saga, reply).saga
    return saga


FO = fulfillment_order_id(ORDER, "WH-1")


def shipment(location="WH-1") -> ShipmentConfirmed:
    return ShipmentConfirmed(fulfillment_order_id=FO, order_id=ORDER, location_id=location, lines=list(LINES),
                             carrier="DHL", tracking_number="T1", shipped_at="2026-01-01T00:00:00Z")


def to_awaiting_shipment() -> s.Saga:
    return through(reserved(), OrderRouted(order_id=ORDER, location_id="WH-1", explanation="x"),
                   ReservationAllocated(order_id=ORDER, location_id="WH-1"),
                   FulfillmentOrderCreated(fulfillment_order_id=FO, order_id=ORDER, location_id="WH-1",
                                           lines=list(LINES)))


def test_a_fulfilment_request_names_the_kind_of_location_routing_planned_with():
    """Fulfillment tells a dropship vendor's purchase order from a warehouse's work item by the kind; the
    request carries routing's word for it, through inventory's pinning, so it need not wait to hear it."""
    plan = [Assignment(location_id="DS-1", lines=list(LINES), location_kind="dropship")]
    routing = s.advance(s.start(new_saga()).saga, reserved()).saga
    step = s.advance(routing, ReservationAllocated(order_id=ORDER, location_id="DS-1", assignments=plan))
    [request] = step.messages
    assert (request.location_id, request.location_kind) == ("DS-1", "dropship")
    assert [p.location_kind for p in step.saga.parts] == ["dropship"]


def test_start_registers_the_release_before_reserving_stock():
    step = s.start(new_saga())
    assert step.saga.state == "reserving"
    assert step.saga.compensations == (s.RELEASE,)
    assert types(step) == [ReserveStock]


def test_happy_path_runs_every_step_in_order():
    saga = s.start(new_saga()).saga
    step = s.advance(saga, reserved())
    assert (step.saga.state, types(step)) == ("routing", [RouteOrder])
    assert step.messages[0].allocate, "routing has inventory pin the first sourcing where it routes it"
    step = s.advance(step.saga, OrderRouted(order_id=ORDER, location_id="WH-1", explanation="nearest",
                                            allocation_requested=True))
    assert (step.saga.state, types(step)) == ("allocating", [])  # routing asked for the pinning already
    step = s.advance(step.saga, ReservationAllocated(order_id=ORDER, location_id="WH-1"))
    assert (step.saga.state, types(step)) == ("fulfilling", [RequestFulfillment])
    step = s.advance(step.saga, FulfillmentOrderCreated(fulfillment_order_id=FO, order_id=ORDER, location_id="WH-1",
                                                        lines=list(LINES)))
    assert (step.saga.state, types(step)) == ("awaiting_shipment", [OrderConfirmed])
    step = s.advance(step.saga, ShipmentConfirmed(fulfillment_order_id=FO, order_id=ORDER, location_id="WH-1",
                                                  lines=list(LINES), carrier="DHL", tracking_number="T1",
                                                  shipped_at="2026-01-01T00:00:00Z"))
    assert (step.saga.state, types(step)) == ("shipped", [CommitReservation, OrderShipped])


def test_no_stock_cancels_and_still_releases_in_case_a_repeated_reserve_succeeded():
    saga = s.on_timeout(s.start(new_saga()).saga).saga  # ReserveStock was sent twice
    step = s.advance(saga, StockUnavailable(order_id=ORDER, reason=ReasonCode(code="OUT_OF_STOCK"), shortages=[]))
    assert step.saga.state == "cancelled"
    assert types(step) == [ReleaseReservation, OrderCancelled]
    assert step.messages[1].reason.code == "OUT_OF_STOCK"


def test_no_route_releases_the_reservation_then_cancels():
    saga = through(reserved())
    step = s.advance(saga, RouteNotFound(order_id=ORDER, reason=ReasonCode(code="NO_LOCATION_WITH_STOCK")))
    assert step.saga.state == "cancelled"
    assert types(step) == [ReleaseReservation, OrderCancelled]


@pytest.mark.parametrize("waiting", [
    (),
    (OrderRouted(order_id=ORDER, location_id="WH-1", explanation="x"),),
])
def test_an_expired_reservation_cancels_an_order_not_yet_confirmed(waiting):
    saga = through(reserved(), *waiting)
    step = s.advance(saga, ReservationExpired(order_id=ORDER, lines=list(LINES)))
    assert step.saga.state == "cancelled"
    assert types(step) == [ReleaseReservation, OrderCancelled]
    assert step.messages[1].reason.code == "RESERVATION_EXPIRED"


def test_a_confirmed_order_ignores_an_expiry():
    saga = through(reserved(), OrderRouted(order_id=ORDER, location_id="WH-1", explanation="x"),
                   ReservationAllocated(order_id=ORDER, location_id="WH-1"))
    assert s.advance(saga, ReservationExpired(order_id=ORDER, lines=list(LINES))) is None


def test_failed_allocation_reroutes_without_that_location_then_gives_up():
    saga = through(reserved())
    for attempt, location in enumerate(["WH-1", "WH-2", "WH-3"], start=1):
        saga = s.advance(saga, OrderRouted(order_id=ORDER, location_id=location, explanation="x")).saga
        step = s.advance(saga, AllocationFailed(order_id=ORDER, location_id=location,
                                                reason=ReasonCode(code="LOCATION_SHORT")))
        saga = step.saga
        if attempt < s.MAX_LOCATION_ATTEMPTS:
            assert saga.state == "routing"
            assert step.messages[0].exclude_locations == ["WH-1", "WH-2", "WH-3"][:attempt]
    assert saga.state == "cancelled"
    assert types(step) == [ReleaseReservation, OrderCancelled]


def test_replies_the_state_does_not_expect_change_nothing():
    saga = through(reserved())
    assert s.advance(saga, reserved()) is None  # duplicate
    pinned_elsewhere = AllocationFailed(order_id=ORDER, location_id="WH-2",
                                        reason=ReasonCode(code="RESERVATION_NOT_HELD"))
    assert s.advance(saga, pinned_elsewhere) is None  # a decision made again found it pinned by the first
    cancelled = s.advance(saga, RouteNotFound(order_id=ORDER, reason=ReasonCode(code="X"))).saga
    assert s.advance(cancelled, OrderRouted(order_id=ORDER, location_id="WH-1", explanation="late")) is None


def test_on_the_first_sourcing_inventory_asks_routing_and_the_saga_only_waits_for_the_answers():
    step = s.start(replace(new_saga(), order_value=Decimal("40.00")))
    assert step.messages[0].route == OnwardRouting(delivery=step.saga.delivery, order_value=Decimal("40.00"))
    step = s.advance(step.saga, reserved().model_copy(update={"routing_requested": True}))
    assert (step.saga.state, step.saga.attempts, types(step)) == ("routing", 1, [])
    assert step.saga.availability == tuple(reserved().availability)
    again = s.on_timeout(step.saga)  # no answer: the saga asks routing itself, with what inventory told it
    assert (again.saga.state, types(again)) == ("routing", [RouteOrder])
    assert again.messages[0].allocate and again.messages[0].availability == reserved().availability
    pinned = s.advance(step.saga, ReservationAllocated(order_id=ORDER, location_id="WH-1"))
    assert (pinned.saga.state, types(pinned)) == ("fulfilling", [RequestFulfillment])


def test_on_the_first_sourcing_the_saga_waits_in_reserving_for_the_pinning_without_reading_the_reservation():
    assert s.ANSWERED_ELSEWHERE[StockReserved] == "routing_requested"
    reserving = s.start(new_saga()).saga
    step = s.advance(reserving, ReservationAllocated(order_id=ORDER, location_id="WH-2", assignments=SPLIT))
    assert (step.saga.state, types(step)) == ("fulfilling", [RequestFulfillment, RequestFulfillment])
    assert [p.location_id for p in step.saga.parts] == ["WH-1", "WH-2"]
    again = s.on_timeout(reserving)  # nothing back: inventory is asked again, and asks routing again
    assert (again.saga.state, types(again), again.messages[0].route.exclude_locations) == (
        "reserving", [ReserveStock], [])
    expired = s.advance(reserving, ReservationExpired(order_id=ORDER, lines=list(LINES)))
    assert expired.saga.state == "cancelled"


def test_a_location_short_on_the_first_sourcing_is_left_out_when_inventory_is_asked_again():
    saga = s.start(new_saga()).saga
    for tried, location in enumerate(["WH-1", "WH-2"], start=1):
        step = s.advance(saga, AllocationFailed(order_id=ORDER, location_id=location,
                                                reason=ReasonCode(code="LOCATION_SHORT")))
        saga = step.saga
        assert (saga.state, saga.attempts, types(step)) == ("reserving", 1, [ReserveStock])
        assert step.messages[0].route.exclude_locations == ["WH-1", "WH-2"][:tried]
    assert s.advance(saga, AllocationFailed(order_id=ORDER, location_id="WH-1",
                                            reason=ReasonCode(code="LOCATION_SHORT"))) is None  # tried already
    given_up = s.advance(saga, AllocationFailed(order_id=ORDER, location_id="WH-3",
                                                reason=ReasonCode(code="LOCATION_SHORT")))
    assert (given_up.saga.state, given_up.saga.cancel_reason.code) == ("cancelled", "NO_ROUTE")


def test_routings_answer_to_inventorys_request_may_be_read_before_the_reservation():
    step = s.advance(s.start(new_saga()).saga, RouteNotFound(order_id=ORDER, reason=ReasonCode(code="NO_LOCATION")))
    assert step.saga.state == "cancelled" and ReleaseReservation in types(step)
    assert s.advance(step.saga, reserved().model_copy(update={"routing_requested": True})) is None


def test_on_the_first_sourcing_routing_asks_for_the_pinning_and_the_saga_only_waits_for_its_answer():
    routing = through(reserved())
    assert s.pending_commands(routing)[0].allocate
    again = s.on_timeout(routing)  # neither answer: routing is asked again, and again to have it pinned
    assert (again.saga.state, types(again), again.messages[0].allocate) == ("routing", [RouteOrder], True)
    allocating = s.advance(routing, OrderRouted(order_id=ORDER, location_id="WH-1", explanation="x",
                                                allocation_requested=True)).saga
    step = s.on_timeout(allocating)  # the decision read, but no answer from inventory: the saga asks itself
    assert (step.saga.state, types(step), step.messages[0].assignments) == (
        "allocating", [AllocateReservation], [Assignment(location_id="WH-1", lines=list(LINES))])
    unasked = s.advance(routing, OrderRouted(order_id=ORDER, location_id="WH-1", explanation="x"))
    assert types(unasked) == [AllocateReservation], "a decision whose routing did not ask for the pinning"


def test_inventorys_answer_to_routings_pinning_may_come_before_the_decision():
    step = s.advance(through(reserved()), ReservationAllocated(order_id=ORDER, location_id="WH-2", assignments=SPLIT))
    assert (step.saga.state, step.saga.parts) == ("fulfilling", (
        s.Part("WH-1", (Line(sku="SKU-1", quantity=1),), "requested"),
        s.Part("WH-2", (Line(sku="SKU-1", quantity=1),), "requested")))
    assert s.advance(step.saga, OrderRouted(order_id=ORDER, location_id="WH-1", explanation="late")) is None
    short = s.advance(through(reserved()), AllocationFailed(order_id=ORDER, location_id="WH-1",
                                                            reason=ReasonCode(code="LOCATION_SHORT")))
    assert (short.saga.state, short.saga.excluded_locations, types(short)) == ("routing", ("WH-1",), [RouteOrder])
    again = AllocationFailed(order_id=ORDER, location_id="WH-1", reason=ReasonCode(code="LOCATION_SHORT"))
    assert s.advance(short.saga, again) is None, "a decision made again on a deadline, found short again"


def test_re_sourcing_asks_for_the_pinning_itself():
    saga = to_awaiting_shipment()
    rejected = s.advance(saga, FulfillmentRejected(fulfillment_order_id=FO, order_id=ORDER, location_id="WH-1",
                                                   reason=ReasonCode(code="DAMAGED"))).saga
    routing = s.advance(rejected, ReservationDeallocated(order_id=ORDER, location_id="WH-1", availability=[])).saga
    assert routing.state == "routing" and not s.pending_commands(routing)[0].allocate
    assert s.advance(routing, ReservationAllocated(order_id=ORDER, location_id="WH-2")) is None
    step = s.advance(routing, OrderRouted(order_id=ORDER, location_id="WH-2", explanation="x"))
    assert (step.saga.state, types(step)) == ("allocating", [AllocateReservation])


def test_a_part_is_recorded_before_its_fulfilment_is_requested_so_a_cancel_withdraws_it():
    saga = through(reserved(), OrderRouted(order_id=ORDER, location_id="WH-1", explanation="x"))
    step = s.advance(saga, ReservationAllocated(order_id=ORDER, location_id="WH-1"))
    assert step.saga.parts == (s.Part("WH-1", LINES, "requested"),)
    assert types(step) == [RequestFulfillment]
    assert types(s.request_cancel(step.saga, "x")) == [CancelFulfillment]


@pytest.mark.parametrize("replies", [[], [reserved()], [reserved(), OrderRouted(order_id=ORDER, location_id="WH-1",
                                                                                 explanation="x")]])
def test_customer_cancel_before_fulfilment_releases_and_cancels_at_once(replies):
    saga = through(*replies)
    step = s.request_cancel(saga, "changed my mind")
    assert step.saga.state == "cancelled"
    assert types(step) == [ReleaseReservation, OrderCancelled]
    assert step.messages[1].reason.code == "CUSTOMER_CANCELLED"
    assert step.messages[1].stage == saga.state


def test_customer_cancel_with_open_fulfilment_waits_for_the_location_then_releases():
    step = s.request_cancel(to_awaiting_shipment(), "changed my mind")
    assert step.saga.state == "cancelling"
    assert types(step) == [CancelFulfillment]
    done = s.advance(step.saga, FulfillmentCancelled(order_id=ORDER, location_id="WH-1", fulfillment_order_id=FO,
                                                     existed=True))
    assert done.saga.state == "cancelled"
    assert types(done) == [ReleaseReservation, OrderCancelled]
    assert done.messages[1].stage == "awaiting_shipment"


def test_a_shipment_wins_over_a_late_cancel():
    cancelling = s.request_cancel(to_awaiting_shipment(), "too late").saga
    step = s.advance(cancelling, shipment())
    assert step.saga.state == "shipped"
    assert types(step) == [CommitReservation, OrderShipped, OrderCancellationRejected]
    assert step.messages[2].reason.code == "ALREADY_SHIPPED"


def test_cancel_after_shipment_or_cancellation_is_refused_with_a_reason():
    shipped = s.advance(to_awaiting_shipment(), shipment()).saga
    assert s.request_cancel(shipped, "x").messages[0].reason.code == "ALREADY_SHIPPED"
    cancelled = s.request_cancel(through(), "x").saga
    assert s.request_cancel(cancelled, "x").messages[0].reason.code == "ALREADY_CANCELLED"


def test_a_rejecting_location_is_replaced_by_another():
    step = s.advance(to_awaiting_shipment(), FulfillmentRejected(
        fulfillment_order_id=FO, order_id=ORDER, location_id="WH-1", reason=ReasonCode(code="SHORT_PICK")))
    assert step.saga.state == "reallocating"
    assert types(step) == [DeallocateReservation]
    assert step.saga.parts_in(*s.LIVE) == []
    step = s.advance(step.saga, ReservationDeallocated(order_id=ORDER, location_id="WH-1",
                                                       availability=reserved().availability))
    assert step.saga.state == "routing"
    assert step.messages[0].exclude_locations == ["WH-1"]


def test_a_silent_step_is_asked_again_then_compensated():
    saga = through(reserved())
    assert saga.attempts == 1
    for attempt in range(2, s.MAX_STEP_ATTEMPTS + 1):
        step = s.on_timeout(saga)
        assert (step.saga.state, step.saga.attempts, types(step)) == ("routing", attempt, [RouteOrder])
        saga = step.saga
    step = s.on_timeout(saga)
    assert step.saga.state == "cancelled"
    assert types(step) == [ReleaseReservation, OrderCancelled]
    assert step.messages[1].reason.code == "STEP_TIMEOUT"


def test_cancelling_never_gives_up():
    saga = s.request_cancel(to_awaiting_shipment(), "x").saga
    for _ in range(s.MAX_STEP_ATTEMPTS * 3):
        step = s.on_timeout(saga)
        assert (step.saga.state, types(step)) == ("cancelling", [CancelFulfillment])
        saga = step.saga


@pytest.mark.parametrize("forged", [
    ShipmentConfirmed(fulfillment_order_id=uuid.uuid4(), order_id=ORDER, location_id="WH-1", lines=list(LINES),
                      carrier="DHL", tracking_number="T1", shipped_at="2026-01-01T00:00:00Z"),
    ShipmentConfirmed(fulfillment_order_id=fulfillment_order_id(ORDER, "WH-9"), order_id=ORDER, location_id="WH-9",
                      lines=list(LINES), carrier="DHL", tracking_number="T1", shipped_at="2026-01-01T00:00:00Z"),
    FulfillmentRejected(fulfillment_order_id=fulfillment_order_id(ORDER, "WH-9"), order_id=ORDER, location_id="WH-9",
                        reason=ReasonCode(code="SHORT_PICK")),
    FulfillmentRejected(fulfillment_order_id=uuid.uuid4(), order_id=ORDER, location_id="WH-1",
                        reason=ReasonCode(code="SHORT_PICK")),
], ids=["shipment-wrong-fulfilment-order", "shipment-wrong-location", "rejection-wrong-location",
        "rejection-wrong-fulfilment-order"])
def test_a_reply_naming_another_location_or_fulfilment_order_changes_nothing(forged):
    assert s.advance(to_awaiting_shipment(), forged) is None


def test_replies_about_other_locations_change_nothing_in_any_state():
    allocating = through(reserved(), OrderRouted(order_id=ORDER, location_id="WH-1", explanation="nearest"))
    assert s.advance(allocating, ReservationAllocated(order_id=ORDER, location_id="WH-2")) is None
    assert s.advance(allocating, AllocationFailed(order_id=ORDER, location_id="WH-2",
                                                  reason=ReasonCode(code="OUT_OF_STOCK"))) is None
    reallocating = s.advance(to_awaiting_shipment(), FulfillmentRejected(
        fulfillment_order_id=FO, order_id=ORDER, location_id="WH-1", reason=ReasonCode(code="SHORT_PICK"))).saga
    assert s.advance(reallocating, ReservationDeallocated(order_id=ORDER, location_id="WH-2",
                                                          availability=reserved().availability)) is None


def test_the_readme_shows_the_saga_as_declared():
    readme = (ROOT / "README.md").read_text()
    shown = readme.split(s.README_TABLE_START)[1].split(s.README_TABLE_END)[0]
    assert shown == s.table(), "run `./oms asyncapi`"


def test_every_step_that_sends_a_command_has_a_deadline_and_registers_its_compensation_before_sending():
    for step in s.STEPS:
        assert (step.state in s.WAITING) == (step.command is not None)
    reserving = s.start(new_saga())
    assert reserving.saga.compensations == (s.RELEASE,) and isinstance(reserving.messages[0], ReserveStock)


def picked_up_or_expired_ids() -> dict:
    return {"fulfillment_order_id": FO, "order_id": ORDER, "location_id": "WH-1"}


def to_ready_for_pickup() -> s.Saga:
    saga = replace(to_awaiting_shipment(), delivery=PickupInStore(store_id="WH-1"))
    step = s.advance(saga, FulfillmentOrderProgressed(**picked_up_or_expired_ids(), status="ready_for_pickup"))
    assert (step.saga.state, types(step)) == ("ready_for_pickup", [OrderReadyForPickup])
    return step.saga


def test_picked_and_packed_are_told_to_the_channel_and_change_nothing_else():
    saga = to_awaiting_shipment()
    step = s.advance(saga, FulfillmentOrderProgressed(**picked_up_or_expired_ids(), status="picked"))
    assert step.saga == saga and [(type(m), m.status) for m in step.messages] == [(OrderProgressed, "picked")]
    accepted = s.advance(saga, FulfillmentOrderProgressed(**picked_up_or_expired_ids(), status="accepted"))
    assert accepted.saga == saga and accepted.messages == []


def test_a_pickup_order_completes_when_collected_and_only_then_commits_its_stock():
    step = s.advance(to_ready_for_pickup(), PickupCompleted(**picked_up_or_expired_ids(), lines=list(LINES),
                                                            picked_up_at="2026-01-01T00:00:00Z"))
    assert (step.saga.state, types(step)) == ("picked_up", [CommitReservation, OrderPickedUp])
    assert types(s.request_cancel(step.saga, "too late")) == [OrderCancellationRejected]


def test_a_pickup_order_not_collected_is_cancelled_and_its_stock_released_without_withdrawing_again():
    step = s.advance(to_ready_for_pickup(), PickupExpired(**picked_up_or_expired_ids(),
                                                          ready_since="2026-01-01T00:00:00Z"))
    assert (step.saga.state, types(step)) == ("cancelled", [ReleaseReservation, OrderCancelled])
    assert step.messages[1].reason.code == "NOT_COLLECTED"


@pytest.mark.parametrize("ready", [False, True])
def test_a_pickup_order_rejected_in_store_is_cancelled_not_rerouted(ready):
    saga = to_ready_for_pickup() if ready else replace(to_awaiting_shipment(),
                                                       delivery=PickupInStore(store_id="WH-1"))
    step = s.advance(saga, FulfillmentRejected(**picked_up_or_expired_ids(), reason=ReasonCode(code="DAMAGED")))
    assert (step.saga.state, types(step)) == ("cancelled", [ReleaseReservation, OrderCancelled])
    assert step.messages[1].reason == ReasonCode(code="PICKUP_REJECTED", detail="DAMAGED")


def test_a_shipment_is_delivered_and_a_delivered_order_cannot_be_cancelled():
    shipped = s.advance(to_awaiting_shipment(), shipment()).saga
    step = s.advance(shipped, DeliveryConfirmed(**picked_up_or_expired_ids(), delivered_at="2026-01-02T00:00:00Z"))
    assert (step.saga.state, types(step)) == ("delivered", [OrderDelivered])
    [refused] = s.request_cancel(step.saga, "late").messages
    assert refused.reason.code == "ALREADY_SHIPPED"


def parcel(quantity: int, complete: bool, tracking: str = "T1", location: str = "WH-1") -> ShipmentConfirmed:
    return ShipmentConfirmed(fulfillment_order_id=fulfillment_order_id(ORDER, location), order_id=ORDER,
                             location_id=location, carrier="DHL",
                             tracking_number=tracking, shipped_at="2026-01-01T00:00:00Z", complete=complete,
                             lines=[Line(sku="SKU-1", quantity=quantity)])


def test_a_partial_shipment_commits_its_own_lines_and_the_last_one_ships_the_order():
    step = s.advance(to_awaiting_shipment(), parcel(1, complete=False))
    assert (step.saga.state, types(step)) == ("partially_shipped", [CommitReservation, OrderShipped])
    assert step.messages[0].lines == [Line(sku="SKU-1", quantity=1)] and not step.messages[1].complete
    assert s.request_cancel(step.saga, "changed my mind").messages[0].reason.code == "ALREADY_SHIPPED"
    step = s.advance(step.saga, parcel(1, complete=True, tracking="T2"))
    assert (step.saga.state, types(step)) == ("shipped", [CommitReservation, OrderShipped])


def short_pick_after_one_parcel() -> s.Step:
    shipped_part = s.advance(to_awaiting_shipment(), parcel(1, complete=False)).saga
    return s.advance(shipped_part, FulfillmentRejected(fulfillment_order_id=FO, order_id=ORDER, location_id="WH-1",
                                                       reason=ReasonCode(code="SHORT_PICK"),
                                                       lines=[Line(sku="SKU-1", quantity=1)]))


def test_a_short_picked_rest_is_re_sourced_elsewhere_and_ships_from_there():
    step = short_pick_after_one_parcel()
    assert (step.saga.state, types(step)) == ("reallocating", [DeallocateReservation])
    step = s.advance(step.saga, ReservationDeallocated(order_id=ORDER, location_id="WH-1", availability=[]))
    [route] = step.messages
    assert (route.lines, route.exclude_locations) == ([Line(sku="SKU-1", quantity=1)], ["WH-1"])
    step = s.advance(step.saga, OrderRouted(order_id=ORDER, location_id="WH-2", explanation="x"))
    assert step.messages[0].assignments == [Assignment(location_id="WH-2", lines=[Line(sku="SKU-1", quantity=1)])]
    step = s.advance(step.saga, ReservationAllocated(order_id=ORDER, location_id="WH-2"))
    assert [(m.location_id, m.lines) for m in step.messages] == [("WH-2", [Line(sku="SKU-1", quantity=1)])]
    step = s.advance(step.saga, created("WH-2", quantity=1))
    assert (step.saga.state, types(step)) == ("partially_shipped", [OrderConfirmed])
    step = s.advance(step.saga, parcel(1, complete=True, location="WH-2"))
    assert (step.saga.state, types(step)) == ("shipped", [CommitReservation, OrderShipped])
    assert step.messages[0].location_id == "WH-2" and step.messages[1].complete


def test_a_short_picked_rest_with_nowhere_else_to_go_is_the_only_thing_cancelled():
    step = short_pick_after_one_parcel()
    step = s.advance(step.saga, ReservationDeallocated(order_id=ORDER, location_id="WH-1", availability=[]))
    step = s.advance(step.saga, RouteNotFound(order_id=ORDER, reason=ReasonCode(code="NO_LOCATION_WITH_STOCK")))
    assert (step.saga.state, types(step)) == ("shipped", [ReleaseReservation, OrderLinesCancelled])
    release, cancelled = step.messages
    assert (release.lines, release.location_id) == ([Line(sku="SKU-1", quantity=1)], None)  # held, after un-pinning
    assert cancelled.lines == [Line(sku="SKU-1", quantity=1)]


SPLIT = [Assignment(location_id="WH-1", lines=[Line(sku="SKU-1", quantity=1)]),
         Assignment(location_id="WH-2", lines=[Line(sku="SKU-1", quantity=1)])]


def created(location: str, quantity: int = 1) -> FulfillmentOrderCreated:
    return FulfillmentOrderCreated(fulfillment_order_id=fulfillment_order_id(ORDER, location), order_id=ORDER,
                                   location_id=location, lines=[Line(sku="SKU-1", quantity=quantity)])


def to_split_awaiting_shipment() -> s.Saga:
    step = s.advance(through(reserved()), OrderRouted(order_id=ORDER, location_id="WH-1", explanation="split",
                                                      assignments=SPLIT, allocation_requested=True))
    assert (step.saga.state, step.saga.plan, step.messages) == ("allocating", tuple(SPLIT), [])
    step = s.advance(step.saga, ReservationAllocated(order_id=ORDER, location_id="WH-1", assignments=SPLIT))
    assert [(type(m), m.location_id) for m in step.messages] == [(RequestFulfillment, "WH-1"),
                                                                (RequestFulfillment, "WH-2")]
    step = s.advance(step.saga, created("WH-2"))
    assert (step.saga.state, types(step)) == ("fulfilling", [OrderConfirmed])  # the other one still to come
    step = s.advance(step.saga, created("WH-1"))
    assert (step.saga.state, types(step)) == ("awaiting_shipment", [OrderConfirmed])
    return step.saga


def test_a_split_order_ships_from_both_locations_and_is_shipped_with_the_last_part():
    step = s.advance(to_split_awaiting_shipment(), parcel(1, complete=True, location="WH-2"))
    assert (step.saga.state, step.messages[0].location_id, step.messages[1].complete) == (
        "partially_shipped", "WH-2", False)
    assert s.request_cancel(step.saga, "x").messages[0].reason.code == "ALREADY_SHIPPED"
    step = s.advance(step.saga, parcel(1, complete=True, location="WH-1"))
    assert (step.saga.state, step.messages[1].complete) == ("shipped", True)
    step = s.advance(step.saga, delivered("WH-1"))
    assert (step.saga.state, step.messages) == ("shipped", [])
    step = s.advance(step.saga, delivered("WH-2"))
    assert (step.saga.state, types(step)) == ("delivered", [OrderDelivered])


def test_a_split_part_rejected_is_re_sourced_while_the_other_ships():
    step = s.advance(to_split_awaiting_shipment(), FulfillmentRejected(
        fulfillment_order_id=fulfillment_order_id(ORDER, "WH-2"), order_id=ORDER, location_id="WH-2",
        reason=ReasonCode(code="DAMAGED")))
    assert (step.saga.state, [m.location_id for m in step.messages]) == ("reallocating", ["WH-2"])
    step = s.advance(step.saga, parcel(1, complete=True, location="WH-1"))  # the other part is not held up
    assert (step.saga.state, types(step), step.messages[1].complete) == (
        "reallocating", [CommitReservation, OrderShipped], False)
    step = s.advance(step.saga, ReservationDeallocated(order_id=ORDER, location_id="WH-2", availability=[]))
    assert step.messages[0].exclude_locations == ["WH-2", "WH-1"]  # tried, and serving already
    step = s.advance(step.saga, OrderRouted(order_id=ORDER, location_id="WH-3", explanation="x"))
    step = s.advance(step.saga, ReservationAllocated(order_id=ORDER, location_id="WH-3"))
    step = s.advance(step.saga, created("WH-3"))
    assert (step.saga.state, types(step)) == ("partially_shipped", [OrderConfirmed])


def test_a_part_rejected_while_another_is_being_un_pinned_is_un_pinned_at_once_too():
    """Found by the broker-restart fault test: the second rejection waited for "the step under way" — the
    un-pinning of the first, which never asks for the second — so its DeallocateReservation went out only when
    the step's deadline passed."""
    step = s.advance(to_split_awaiting_shipment(), FulfillmentRejected(
        fulfillment_order_id=fulfillment_order_id(ORDER, "WH-2"), order_id=ORDER, location_id="WH-2",
        reason=ReasonCode(code="DAMAGED")))
    step = s.advance(step.saga, FulfillmentRejected(
        fulfillment_order_id=fulfillment_order_id(ORDER, "WH-1"), order_id=ORDER, location_id="WH-1",
        reason=ReasonCode(code="DAMAGED")))
    assert (step.saga.state, [(type(m), m.location_id) for m in step.messages]) == (
        "reallocating", [(DeallocateReservation, "WH-1")])
    step = s.advance(step.saga, ReservationDeallocated(order_id=ORDER, location_id="WH-2", availability=[]))
    assert (step.saga.state, step.messages) == ("reallocating", [])
    step = s.advance(step.saga, ReservationDeallocated(order_id=ORDER, location_id="WH-1", availability=[]))
    assert (step.saga.state, types(step)) == ("routing", [RouteOrder])


def test_a_re_sourced_part_whose_allocation_never_answered_is_released_where_it_may_have_been_pinned():
    """Found by the broker-restart fault test: inventory's consumer stalled for half a minute, the allocation at the
    new location timed out, the order kept its shipped part — and the allocation, done late, was never undone
    (inventory releases lines from what is held, and they were pinned). Un-pinning the location first makes the
    release find them, whether the allocation happened or not (one partition: inventory applies them in order)."""
    step = s.advance(to_split_awaiting_shipment(), FulfillmentRejected(
        fulfillment_order_id=fulfillment_order_id(ORDER, "WH-2"), order_id=ORDER, location_id="WH-2",
        reason=ReasonCode(code="DAMAGED")))
    step = s.advance(step.saga, ReservationDeallocated(order_id=ORDER, location_id="WH-2", availability=[]))
    step = s.advance(step.saga, OrderRouted(order_id=ORDER, location_id="WH-3", explanation="x"))
    step = s.advance(step.saga, parcel(1, complete=True, location="WH-1"))
    saga = step.saga
    assert (saga.state, [a.location_id for a in saga.plan]) == ("allocating", ["WH-3"])
    for _ in range(s.MAX_STEP_ATTEMPTS):
        step = s.on_timeout(saga)
        saga = step.saga
    assert saga.state == "shipped"
    undo = [(type(m), m.location_id) for m in step.messages
            if isinstance(m, (DeallocateReservation, ReleaseReservation))]
    assert undo == [(DeallocateReservation, "WH-3"), (ReleaseReservation, None)]
    assert step.messages[[type(m) for m in step.messages].index(ReleaseReservation)].lines == [
        Line(sku="SKU-1", quantity=1)]


def test_a_cancel_overtaken_by_one_parts_shipment_cancels_only_the_other_part():
    step = s.request_cancel(to_split_awaiting_shipment(), "changed my mind")
    assert (step.saga.state, [m.location_id for m in step.messages]) == ("cancelling", ["WH-1", "WH-2"])
    step = s.advance(step.saga, FulfillmentCancelled(order_id=ORDER, location_id="WH-1", existed=True,
                                                     fulfillment_order_id=fulfillment_order_id(ORDER, "WH-1")))
    assert (step.saga.state, step.messages) == ("cancelling", [])
    step = s.advance(step.saga, parcel(1, complete=True, location="WH-2"))
    assert (step.saga.state, types(step)) == ("shipped", [CommitReservation, OrderShipped, OrderCancellationRejected,
                                                          ReleaseReservation, OrderLinesCancelled])
    release = step.messages[3]
    assert (release.lines, release.location_id) == ([Line(sku="SKU-1", quantity=1)], "WH-1")
    assert step.messages[1].complete


def test_a_delivered_part_and_the_rest_cancelled_delivers_the_order():
    step = s.advance(to_split_awaiting_shipment(), parcel(1, complete=True, location="WH-1"))
    step = s.advance(step.saga, delivered("WH-1"))
    assert (step.saga.state, step.messages) == ("partially_shipped", [])
    step = s.advance(step.saga, FulfillmentRejected(fulfillment_order_id=fulfillment_order_id(ORDER, "WH-2"),
                                                    order_id=ORDER, location_id="WH-2",
                                                    reason=ReasonCode(code="DAMAGED")))
    step = s.advance(step.saga, ReservationDeallocated(order_id=ORDER, location_id="WH-2", availability=[]))
    step = s.advance(step.saga, RouteNotFound(order_id=ORDER, reason=ReasonCode(code="NO_LOCATION_WITH_STOCK")))
    assert (step.saga.state, types(step)) == ("delivered", [ReleaseReservation, OrderLinesCancelled, OrderDelivered])


def delivered(location: str) -> DeliveryConfirmed:
    return DeliveryConfirmed(fulfillment_order_id=fulfillment_order_id(ORDER, location), order_id=ORDER,
                             location_id=location, delivered_at="2026-01-02T00:00:00Z")


def test_route_order_carries_the_order_value_for_routings_split_rule():
    priced = [PricedLine(sku="SKU-1", quantity=2, unit_price=Decimal("19.99")),
              PricedLine(sku="SKU-2", quantity=1, unit_price=Decimal("5.00"))]
    saga = replace(new_saga(), order_value=s.order_value(priced))
    [route] = s.advance(s.start(saga).saga, reserved()).messages
    assert route.order_value == Decimal("44.98")


def test_an_order_the_channel_lets_wait_is_backordered_and_routed_when_stock_arrives():
    saga = replace(new_saga(), backorder_skus=("SKU-1",))
    reserving = s.start(saga)
    assert reserving.messages[0].backorder_skus == ["SKU-1"]
    step = s.advance(reserving.saga, StockBackordered(order_id=ORDER, expected_on="2027-01-10", shortages=[
        Shortage(sku="SKU-1", requested=2, available=0)]))
    assert (step.saga.state, types(step)) == ("backordered", [OrderBackordered])
    assert step.messages[0].short == [Line(sku="SKU-1", quantity=2)]
    assert step.saga.state not in s.WAITING  # no deadline: it waits as long as the stock takes
    step = s.advance(step.saga, reserved())
    assert (step.saga.state, types(step)) == ("routing", [RouteOrder])


# --- holds and payments -----------------------------------------------------------------------------------------

PLACED = {"currency": "EUR", "lines": [{"sku": "SKU-1", "quantity": 2, "unit_price": "10.00"}],
          "payment": {"provider": "psp", "reference": "auth-1", "amount": "20.00"}}


def held_saga(**hold) -> s.Saga:
    saga = replace(through(reserved(), OrderRouted(order_id=ORDER, location_id="WH-1", explanation="x")),
                   holds=(Hold(reason="fraud_review", placed_by="rule", **hold),))
    step = s.advance(saga, ReservationAllocated(order_id=ORDER, location_id="WH-1"))
    assert (step.saga.state, step.messages) == ("held", [])  # pinned, not released to fulfilment
    assert step.saga.state not in s.WAITING
    return step.saga


def test_a_held_order_is_released_to_fulfilment_when_its_last_hold_is():
    saga = s.hold(held_saga(), Hold(reason="manual", placed_by="agent")).saga
    step = s.release_hold(saga, "fraud_review", "agent")
    assert (step.saga.state, types(step)) == ("held", [OrderHoldReleased])
    step = s.release_hold(step.saga, "manual", "agent")
    assert (step.saga.state, types(step)) == ("fulfilling", [OrderHoldReleased, RequestFulfillment])
    assert s.release_hold(step.saga, "manual", "agent").messages[0].reason.code == "NOT_HELD"


def test_a_hold_lapses_at_its_expiry():
    expiry = datetime(2027, 1, 1, tzinfo=UTC)
    saga = held_saga(expires_at=expiry)
    assert s.hold_deadline(saga) == expiry
    assert s.on_timeout(saga, expiry - timedelta(seconds=1)).saga.state == "held"
    step = s.on_timeout(saga, expiry)
    assert (step.saga.state, types(step)) == ("fulfilling", [OrderHoldReleased, RequestFulfillment])
    assert step.messages[0].released_by == "expiry"


def test_a_hold_is_refused_once_everything_is_handed_over_or_cancelled():
    shipped = s.advance(to_awaiting_shipment(), shipment()).saga
    assert s.hold(shipped, Hold(reason="manual", placed_by="x")).messages[0].reason.code == "ALREADY_SHIPPED"
    cancelled = s.request_cancel(through(), "x").saga
    assert s.hold(cancelled, Hold(reason="manual", placed_by="x")).messages[0].reason.code == "ALREADY_CANCELLED"


def amounts(total: str) -> ShipmentAmounts:
    return ShipmentAmounts(channel="web", channel_order_id="W-1", currency="EUR", lines=[], shipping=0,
                           shipping_tax=0, tax=0, total=Decimal(total), prices_include_tax=False)


def test_each_shipment_is_captured_once_and_a_cancel_voids_what_is_left():
    saga = replace(to_awaiting_shipment(), placed=PLACED)
    step = s.advance(saga, parcel(1, complete=False).model_copy(update={"amounts": amounts("10.00")}))
    [capture] = [m for m in step.messages if isinstance(m, CapturePayment)]
    assert (capture.amount, capture.authorization_reference, capture.capture_id) == (
        Decimal("10.00"), "auth-1", step.messages[1].shipment_id)
    paid = PaymentCaptured(order_id=ORDER, capture_id=capture.capture_id, amount=Decimal("10.00"))
    saga = s.advance(s.advance(step.saga, paid).saga, paid).saga  # the same capture told twice
    assert s.captured(saga) == Decimal("10.00")

    cancelled = replace(through(reserved()), placed=PLACED)
    step = s.request_cancel(cancelled, "x")
    assert types(step) == [ReleaseReservation, OrderCancelled, VoidAuthorization]
    assert step.messages[2].amount == Decimal("20.00")


def test_a_failed_capture_puts_the_order_on_hold():
    saga = replace(to_awaiting_shipment(), placed=PLACED)
    step = s.advance(saga, PaymentCaptureFailed(order_id=ORDER, capture_id=FO,
                                                reason=ReasonCode(code="INSUFFICIENT_FUNDS")))
    assert types(step) == [OrderHeld] and step.saga.holds[0].reason == "payment_capture_failed"


def test_a_return_refunds_all_of_it_and_an_exchange_only_the_difference():
    saga = replace(to_awaiting_shipment(), placed=PLACED)
    [refund] = s.settle_return(saga, "R1", amounts("22.60"), None)
    assert (type(refund), refund.amount, refund.refund_id) == (RefundPayment, Decimal("22.60"), "R1")
    [charge] = s.settle_return(saga, "X1", amounts("22.60"), Decimal("2.40"))
    assert (type(charge), charge.amount) == (CapturePayment, Decimal("2.40"))
    assert charge.capture_id == s.settle_return(saga, "X1", amounts("22.60"), Decimal("2.40"))[0].capture_id
    [back] = s.settle_return(saga, "X2", amounts("22.60"), Decimal("-12.60"))
    assert (type(back), back.amount) == (RefundPayment, Decimal("12.60"))
    assert s.settle_return(saga, "X3", amounts("22.60"), Decimal(0)) == []
