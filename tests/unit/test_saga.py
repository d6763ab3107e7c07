import uuid

from shared.contracts.common import Line, ReasonCode
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
from ops.demo import address
from shared.contracts.common import ShipTo
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


def test_start_reserves_stock():
    step = s.start(new_saga())
    assert step.saga.state == "reserving"
    assert types(step) == [ReserveStock]


def test_happy_path_runs_every_step_in_order():
    saga = s.start(new_saga()).saga
    step = s.advance(saga, reserved())
    assert (step.saga.state, types(step)) == ("routing", [RouteOrder])
    step = s.advance(step.saga, OrderRouted(order_id=ORDER, location_id="WH-1", explanation="nearest"))
    assert (step.saga.state, types(step)) == ("allocating", [AllocateReservation])
    step = s.advance(step.saga, ReservationAllocated(order_id=ORDER, location_id="WH-1"))
    assert (step.saga.state, types(step)) == ("fulfilling", [RequestFulfillment])
    fo = uuid.uuid4()
    step = s.advance(step.saga, FulfillmentOrderCreated(fulfillment_order_id=fo, order_id=ORDER, location_id="WH-1",
                                                        lines=list(LINES)))
    assert (step.saga.state, types(step)) == ("awaiting_shipment", [OrderConfirmed])
    step = s.advance(step.saga, ShipmentConfirmed(fulfillment_order_id=fo, order_id=ORDER, location_id="WH-1",
                                                  lines=list(LINES), carrier="DHL", tracking_number="T1",
                                                  shipped_at="2026-01-01T00:00:00Z"))
    assert (step.saga.state, types(step)) == ("shipped", [CommitReservation, OrderShipped])


def test_no_stock_cancels_without_compensation():
    saga = s.start(new_saga()).saga
    step = s.advance(saga, StockUnavailable(order_id=ORDER, reason=ReasonCode(code="OUT_OF_STOCK"), shortages=[]))
    assert step.saga.state == "cancelled"
    assert types(step) == [OrderCancelled]
    assert step.messages[0].reason.code == "OUT_OF_STOCK"


def test_no_route_releases_the_reservation_then_cancels():
    saga = through(reserved())
    step = s.advance(saga, RouteNotFound(order_id=ORDER, reason=ReasonCode(code="NO_LOCATION_WITH_STOCK")))
    assert step.saga.state == "cancelled"
    assert types(step) == [ReleaseReservation, OrderCancelled]


def test_failed_allocation_reroutes_without_that_location_then_gives_up():
    saga = through(reserved())
    for attempt, location in enumerate(["WH-1", "WH-2", "WH-3"], start=1):
        saga = s.advance(saga, OrderRouted(order_id=ORDER, location_id=location, explanation="x")).saga
        step = s.advance(saga, AllocationFailed(order_id=ORDER, location_id=location,
                                                reason=ReasonCode(code="LOCATION_SHORT")))
        saga = step.saga
        if attempt < s.MAX_ALLOCATION_ATTEMPTS:
            assert saga.state == "routing"
            assert step.messages[0].exclude_locations == ["WH-1", "WH-2", "WH-3"][:attempt]
    assert saga.state == "cancelled"
    assert types(step) == [ReleaseReservation, OrderCancelled]


def test_replies_the_state_does_not_expect_change_nothing():
    saga = through(reserved())
    assert s.advance(saga, reserved()) is None  # duplicate
    assert s.advance(saga, ReservationAllocated(order_id=ORDER, location_id="WH-1")) is None  # out of order
    cancelled = s.advance(saga, RouteNotFound(order_id=ORDER, reason=ReasonCode(code="X"))).saga
    assert s.advance(cancelled, OrderRouted(order_id=ORDER, location_id="WH-1", explanation="late")) is None
