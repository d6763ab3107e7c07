"""Order edits and line cancellations in the saga (pure): what is asked of whom, in what order, and what is
refused."""

import uuid
from dataclasses import replace
from decimal import Decimal

from shared.contracts.common import Assignment, Line, ReasonCode, ShipTo
from shared.contracts.fulfillment import (
    AmendFulfillment,
    CancelFulfillment,
    FulfillmentAmended,
    FulfillmentAmendmentRefused,
    FulfillmentCancelled,
    FulfillmentOrderCreated,
    FulfillmentRejected,
    RequestFulfillment,
    ShipmentConfirmed,
    fulfillment_order_id,
)
from shared.contracts.inventory import (
    AllocateReservation,
    DeallocateReservation,
    ExtendReservation,
    LocationAvailability,
    ReleaseReservation,
    ReservationAllocated,
    ReservationDeallocated,
    ReservationExtended,
    ReservationExtensionRefused,
    StockReserved,
)
from shared.contracts.orders import (
    CancelOrderLines,
    EditOrder,
    Hold,
    OrderCancelled,
    OrderEdited,
    OrderEditRefused,
    OrderLinesCancelled,
    PlaceOrder,
)
from shared.contracts.payments import AdjustAuthorization, AuthorizationAdjustmentFailed, VoidAuthorization
from shared.contracts.routing import OrderRouted, RouteNotFound, RouteOrder

from ops.demo import address
from services.capture import saga as s
from services.capture.edits import edited_order

ORDER = uuid.uuid4()
FO = fulfillment_order_id(ORDER, "WH-1")
ORDERED = PlaceOrder.model_validate({
    "channel": "web", "channel_order_id": "W-1", "currency": "EUR",
    "customer": {"customer_id": "C-1", "email": "c@example.org", "name": "C"},
    "lines": [{"sku": "SKU-1", "quantity": 2, "unit_price": "10.00"},
              {"sku": "SKU-2", "quantity": 1, "unit_price": "5.00"}],
    "delivery": {"type": "ship", "address": address().model_dump(mode="json")},
    "payment": {"provider": "psp", "reference": "auth-1", "amount": "25.00"}})
LINES = (Line(sku="SKU-1", quantity=2), Line(sku="SKU-2", quantity=1))


def types(step: s.Step) -> list[type]:
    return [type(m) for m in step.messages]


def only(step: s.Step, kind: type):
    [message] = [m for m in step.messages if isinstance(m, kind)]
    return message


def advance(saga: s.Saga, *replies) -> s.Step:
    step = s.Step(saga)
    for reply in replies:
        step = s.advance(step.saga, reply)
        assert step is not None, reply
    return step


def created(fo: uuid.UUID = FO, lines=LINES) -> FulfillmentOrderCreated:
    return FulfillmentOrderCreated(fulfillment_order_id=fo, order_id=ORDER, location_id="WH-1", lines=list(lines))


def awaiting_shipment() -> s.Saga:
    saga = s.start(s.Saga(order_id=ORDER, state="new", lines=LINES, delivery=ORDERED.delivery, channel="web",
                          channel_order_id="W-1", placed=ORDERED.model_dump(mode="json"))).saga
    saga = advance(saga, StockReserved(order_id=ORDER, lines=list(LINES), availability=[
        LocationAvailability(location_id="WH-1", sku="SKU-1", available=5)])).saga
    saga = advance(saga, OrderRouted(order_id=ORDER, location_id="WH-1", explanation="x"),
                   ReservationAllocated(order_id=ORDER, location_id="WH-1")).saga
    saga = advance(saga, created()).saga
    assert saga.state == "awaiting_shipment"
    return saga


def edit(saga: s.Saga, cmd: EditOrder | CancelOrderLines) -> s.Step:
    return s.request_edit(saga, cmd.edit_id, edited_order(saga.placed, cmd))


def cancel_lines(*lines: tuple[str, int], edit_id: str = "E1") -> CancelOrderLines:
    return CancelOrderLines(channel="web", channel_order_id="W-1", edit_id=edit_id,
                            lines=[Line(sku=sku, quantity=quantity) for sku, quantity in lines])


def with_lines(*lines: tuple[str, int, str], edit_id: str = "E1", **changes) -> EditOrder:
    return EditOrder(channel="web", channel_order_id="W-1", edit_id=edit_id, **changes,
                     lines=[{"sku": sku, "quantity": quantity, "unit_price": price} for sku, quantity, price in lines])


def test_a_line_cancelled_shrinks_its_fulfilment_order_in_place_and_releases_only_its_units():
    step = edit(awaiting_shipment(), cancel_lines(("SKU-2", 1)))
    assert (step.saga.state, types(step)) == ("amending", [AmendFulfillment])
    [part] = step.messages[0].parts
    assert (part.fulfillment_order_id, part.lines) == (FO, [Line(sku="SKU-1", quantity=2)])
    assert [line.sku for line in step.messages[0].billing.lines] == ["SKU-1"]

    step = advance(step.saga, FulfillmentAmended(order_id=ORDER, edit_id="E1", parts=[part]))
    assert types(step) == [ReleaseReservation, OrderEdited, AdjustAuthorization]
    release, edited, adjust = step.messages
    assert (release.lines, release.location_id) == ([Line(sku="SKU-2", quantity=1)], "WH-1")
    assert (edited.removed, edited.added, edited.amount_due) == ([Line(sku="SKU-2", quantity=1)], [], Decimal("20.00"))
    assert (adjust.previous_amount, adjust.amount, adjust.adjustment_id) == (Decimal("25.00"), Decimal("20.00"), "E1")
    assert (step.saga.state, step.saga.edit, step.saga.lines) == ("awaiting_shipment", None,
                                                                  (Line(sku="SKU-1", quantity=2),))
    assert step.saga.parts[0].lines == (Line(sku="SKU-1", quantity=2),) and step.saga.placed_changed
    assert s.billing(step.saga).lines[0].quantity == 2


def test_an_edit_the_location_has_picked_already_is_refused_and_nothing_changes():
    saga = awaiting_shipment()
    step = edit(saga, cancel_lines(("SKU-2", 1)))
    step = advance(step.saga, FulfillmentAmendmentRefused(order_id=ORDER, edit_id="E1", fulfillment_order_id=FO,
                                                          location_id="WH-1", reason=ReasonCode(code="ALREADY_PICKED")))
    assert types(step) == [OrderEditRefused] and step.messages[0].reason.code == "ALREADY_PICKED"
    assert (step.saga.state, step.saga.edit, step.saga.parts, step.saga.lines) == (
        "awaiting_shipment", None, saga.parts, saga.lines)


def test_a_reply_to_another_edit_is_not_this_edits():
    step = edit(awaiting_shipment(), cancel_lines(("SKU-2", 1)))
    other = FulfillmentAmended(order_id=ORDER, edit_id="E0", parts=step.messages[0].parts)
    assert s.advance(step.saga, other) is None


def test_units_added_are_reserved_first_then_the_order_is_routed_anew_and_may_return_to_the_same_location():
    step = edit(awaiting_shipment(), with_lines(("SKU-1", 3, "10.00"), ("SKU-2", 1, "5.00")))
    assert (step.saga.state, types(step)) == ("extending", [ExtendReservation])
    assert step.messages[0].lines == [Line(sku="SKU-1", quantity=1)]
    assert s.on_timeout(step.saga).messages == step.messages  # asked again on its deadline, never given up

    step = advance(step.saga, ReservationExtended(order_id=ORDER, edit_id="E1", lines=[Line(sku="SKU-1", quantity=1)]))
    assert (step.saga.state, step.messages[0].parts[0].lines) == ("amending", [])  # withdrawn, to be routed anew
    step = advance(step.saga, FulfillmentAmended(order_id=ORDER, edit_id="E1", parts=step.messages[0].parts))
    assert types(step) == [OrderEdited, AdjustAuthorization, DeallocateReservation]
    assert step.messages[1].amount == Decimal("35.00")

    step = advance(step.saga, ReservationDeallocated(order_id=ORDER, location_id="WH-1", availability=[]))
    route = only(step, RouteOrder)
    assert (route.lines, route.exclude_locations) == ([Line(sku="SKU-1", quantity=3), Line(sku="SKU-2", quantity=1)],
                                                      [])
    step = advance(step.saga, OrderRouted(order_id=ORDER, location_id="WH-1", explanation="x"))
    assert only(step, AllocateReservation).assignments[0].lines == route.lines
    step = advance(step.saga, ReservationAllocated(order_id=ORDER, location_id="WH-1"))
    request = only(step, RequestFulfillment)
    second = fulfillment_order_id(ORDER, "WH-1", 1)
    assert (request.fulfillment_order_id, request.lines) == (second, route.lines)
    assert advance(step.saga, created(second, route.lines)).saga.state == "awaiting_shipment"
    assert s.advance(step.saga, created(FO, route.lines)) is None  # the withdrawn one is not the new one


def test_a_new_address_reroutes_the_order():
    moved = ShipTo(address=address("Hamburg"))
    step = edit(awaiting_shipment(), EditOrder(channel="web", channel_order_id="W-1", edit_id="E1", delivery=moved))
    assert (step.saga.state, step.messages[0].parts[0].lines) == ("amending", [])
    step = advance(step.saga, FulfillmentAmended(order_id=ORDER, edit_id="E1", parts=step.messages[0].parts))
    assert only(step, OrderEdited).rerouted and not any(isinstance(m, AdjustAuthorization) for m in step.messages)
    step = advance(step.saga, ReservationDeallocated(order_id=ORDER, location_id="WH-1", availability=[]))
    assert only(step, RouteOrder).delivery == moved


def test_units_that_cannot_be_reserved_refuse_the_edit_before_anything_else_is_asked():
    saga = awaiting_shipment()
    step = edit(saga, with_lines(("SKU-1", 9, "10.00")))
    step = advance(step.saga, ReservationExtensionRefused(order_id=ORDER, edit_id="E1",
                                                          reason=ReasonCode(code="OUT_OF_STOCK")))
    assert types(step) == [OrderEditRefused] and step.messages[0].reason.code == "OUT_OF_STOCK"
    assert (step.saga.state, step.saga.lines) == ("awaiting_shipment", saga.lines)


def test_a_refused_amendment_gives_back_the_units_already_added():
    step = edit(awaiting_shipment(), with_lines(("SKU-1", 3, "10.00"), ("SKU-2", 1, "5.00")))
    step = advance(step.saga, ReservationExtended(order_id=ORDER, edit_id="E1", lines=[Line(sku="SKU-1", quantity=1)]),
                   FulfillmentAmendmentRefused(order_id=ORDER, edit_id="E1", fulfillment_order_id=FO,
                                               location_id="WH-1", reason=ReasonCode(code="ALREADY_PICKED")))
    assert types(step) == [ReleaseReservation, OrderEditRefused]
    assert (step.messages[0].lines, step.messages[0].location_id) == ([Line(sku="SKU-1", quantity=1)], None)


def test_edits_are_refused_once_shipped_cancelled_or_while_another_step_is_under_way():
    saga = awaiting_shipment()
    shipped = advance(saga, ShipmentConfirmed(fulfillment_order_id=FO, order_id=ORDER, location_id="WH-1",
                                              lines=list(LINES), carrier="DHL", tracking_number="T1",
                                              shipped_at="2026-01-01T00:00:00Z")).saga
    editing = edit(saga, cancel_lines(("SKU-2", 1))).saga
    cancelled = s.request_cancel(saga, "x").saga
    for current, code in ((shipped, "ALREADY_SHIPPED"), (editing, "ORDER_BUSY"), (cancelled, "ALREADY_CANCELLED"),
                          (replace(saga, state="routing"), "ORDER_BUSY")):
        step = edit(current, cancel_lines(("SKU-2", 1), edit_id="E2"))
        assert (types(step), step.messages[0].reason.code, step.saga) == ([OrderEditRefused], code, current)


def test_a_cancel_during_an_edit_refuses_the_edit():
    step = edit(awaiting_shipment(), cancel_lines(("SKU-2", 1)))
    step = s.request_cancel(step.saga, "changed my mind")
    assert types(step) == [OrderEditRefused, CancelFulfillment]
    assert step.messages[0].reason.code == "ALREADY_CANCELLED" and step.saga.edit is None


def held() -> s.Saga:
    saga = replace(awaiting_shipment(), state="held", parts=(), holds=(Hold(reason="manual", placed_by="x"),),
                   plan=(Assignment(location_id="WH-1", lines=list(LINES)),))
    return saga


def test_a_held_order_shrinks_its_pinned_plan_without_asking_any_location_and_stays_held():
    step = edit(held(), cancel_lines(("SKU-1", 1)))
    assert types(step) == [ReleaseReservation, OrderEdited, AdjustAuthorization]
    assert (step.messages[0].lines, step.messages[0].location_id) == ([Line(sku="SKU-1", quantity=1)], "WH-1")
    assert (step.saga.state, step.saga.plan[0].lines) == ("held", [Line(sku="SKU-1", quantity=1),
                                                                   Line(sku="SKU-2", quantity=1)])
    released = s.release_hold(step.saga, "manual", "x")
    assert only(released, RequestFulfillment).lines == list(step.saga.plan[0].lines)


def test_a_held_order_given_more_units_is_routed_anew_and_held_again():
    step = edit(held(), with_lines(("SKU-1", 3, "10.00"), ("SKU-2", 1, "5.00")))
    step = advance(step.saga, ReservationExtended(order_id=ORDER, edit_id="E1", lines=[Line(sku="SKU-1", quantity=1)]))
    assert (step.saga.state, only(step, DeallocateReservation).location_id) == ("reallocating", "WH-1")
    step = advance(step.saga, ReservationDeallocated(order_id=ORDER, location_id="WH-1", availability=[]),
                   OrderRouted(order_id=ORDER, location_id="WH-1", explanation="x"),
                   ReservationAllocated(order_id=ORDER, location_id="WH-1"))
    assert (step.saga.state, step.messages) == ("held", [])


def test_a_raise_the_provider_declines_puts_the_order_on_hold():
    step = advance(awaiting_shipment(), AuthorizationAdjustmentFailed(order_id=ORDER, adjustment_id="E1",
                                                                      reason=ReasonCode(code="INSUFFICIENT_FUNDS")))
    assert step.saga.holds[0].reason == "payment_review"


def test_a_line_cancellation_keeps_the_kept_units_share_of_discount_and_tax():
    placed = ORDERED.model_copy(update={"lines": [ORDERED.lines[0].model_copy(update={
        "quantity": 3, "discount": Decimal("1.00"), "tax": Decimal("5.70")})]}).model_dump(mode="json")
    after = edited_order(placed, cancel_lines(("SKU-1", 1)))
    assert after["lines"] == [{**placed["lines"][0], "quantity": 2, "discount": "0.67", "tax": "3.80"}]
    assert edited_order(placed, cancel_lines(("SKU-1", 4))).code == "NOT_ON_ORDER"
    assert edited_order(placed, cancel_lines(("SKU-9", 1))).code == "NOT_ON_ORDER"


def test_an_edit_leaving_the_order_worth_more_than_an_amount_holds_is_refused():
    """Each new line's amount fits, the order's goods do not: the edit is refused, not left to fail later."""
    placed = ORDERED.model_dump(mode="json")
    refused = edited_order(placed, with_lines(("SKU-1", 10_000, "999999999.99")))
    assert isinstance(refused, ReasonCode) and refused.code == "INVALID_AMOUNT"
    assert edited_order(placed, with_lines(("SKU-1", 10, "999999999.99")))["lines"][0]["quantity"] == 10


def split_with_one_part_shipped() -> s.Saga:
    """SKU-1 x2 at WH-1 (open), SKU-2 x1 at WH-2 (shipped and paid: 5.00)."""
    saga = awaiting_shipment()
    saga = replace(saga, parts=(s.Part("WH-1", (Line(sku="SKU-1", quantity=2),), "open"),
                                s.Part("WH-2", (Line(sku="SKU-2", quantity=1),), "shipped")),
                   state="partially_shipped", captures=(("cap-1", Decimal("5.00")),),
                   shipped=(Line(sku="SKU-2", quantity=1),))
    return saga


def test_a_split_keeps_what_it_handed_over_and_an_edit_changes_only_its_open_part_and_what_is_still_due():
    step = edit(split_with_one_part_shipped(), cancel_lines(("SKU-1", 1)))
    [part] = step.messages[0].parts
    assert (part.location_id, part.lines) == ("WH-1", [Line(sku="SKU-1", quantity=1)])
    step = advance(step.saga, FulfillmentAmended(order_id=ORDER, edit_id="E1", parts=[part]))
    edited = only(step, OrderEdited)
    assert (edited.totals.total, edited.captured, edited.amount_due) == (Decimal("15.00"), Decimal("5.00"),
                                                                       Decimal("10.00"))
    assert step.saga.state == "partially_shipped" and step.saga.parts[1].status == "shipped"


def test_an_edit_taking_off_units_already_handed_over_is_refused():
    step = edit(split_with_one_part_shipped(), cancel_lines(("SKU-2", 1)))
    assert types(step) == [OrderEditRefused]
    assert (step.messages[0].reason.code, step.messages[0].reason.detail) == (
        "ALREADY_SHIPPED", "handed over already: 1 SKU-2")


def held_with_an_open_part_and_a_pinned_plan() -> s.Saga:
    """Held after a part was re-sourced: WH-1 fills its part, the plan for the rest waits pinned at WH-2."""
    return replace(awaiting_shipment(), state="held", holds=(Hold(reason="manual", placed_by="ops"),),
                   parts=(s.Part("WH-1", (Line(sku="SKU-1", quantity=2),), "open"),),
                   plan=(Assignment(location_id="WH-2", lines=[Line(sku="SKU-1", quantity=1),
                                                                Line(sku="SKU-2", quantity=1)]),))


def test_an_edit_that_empties_a_held_plan_does_not_leave_the_order_waiting_for_nothing_when_released():
    step = edit(held_with_an_open_part_and_a_pinned_plan(), cancel_lines(("SKU-2", 1)))
    step = advance(step.saga, FulfillmentAmended(order_id=ORDER, edit_id="E1", parts=step.messages[0].parts))
    assert step.saga.plan == (Assignment(location_id="WH-2", lines=[Line(sku="SKU-1", quantity=1)]),)
    step = edit(step.saga, cancel_lines(("SKU-1", 1), edit_id="E2"))
    step = advance(step.saga, FulfillmentAmended(order_id=ORDER, edit_id="E2", parts=step.messages[0].parts))
    assert (step.saga.state, step.saga.plan) == ("held", ())
    released = s.release_hold(step.saga, "manual", "ops")
    assert released.saga.state == "awaiting_shipment"  # not `fulfilling` with nothing to request


def test_units_removed_come_off_once_wherever_they_are():
    step = edit(held_with_an_open_part_and_a_pinned_plan(), cancel_lines(("SKU-1", 1)))
    [part] = step.messages[0].parts
    assert part.lines == [Line(sku="SKU-1", quantity=2)]  # the pinned plan gives up the unit, not the open part
    step = advance(step.saga, FulfillmentAmended(order_id=ORDER, edit_id="E1", parts=[part]))
    assert step.saga.parts[0].lines == (Line(sku="SKU-1", quantity=2),)
    assert step.saga.plan == (Assignment(location_id="WH-2", lines=[Line(sku="SKU-2", quantity=1)]),)
    assert only(step, ReleaseReservation).lines == [Line(sku="SKU-1", quantity=1)]


def test_a_deadline_in_a_step_left_with_nothing_to_ask_moves_the_order_on_instead_of_failing():
    stranded = replace(awaiting_shipment(), state="reallocating", attempts=s.MAX_STEP_ATTEMPTS)
    assert s.on_timeout(stranded).saga.state == "awaiting_shipment"


def test_lines_the_oms_cannot_fill_leave_the_order_and_its_authorisation():
    shipped = advance(awaiting_shipment(), ShipmentConfirmed(
        fulfillment_order_id=FO, order_id=ORDER, location_id="WH-1", lines=[Line(sku="SKU-1", quantity=2)],
        carrier="DHL", tracking_number="T1", shipped_at="2026-01-01T00:00:00Z", complete=False)).saga
    step = advance(shipped, FulfillmentRejected(fulfillment_order_id=FO, order_id=ORDER, location_id="WH-1",
                                                reason=ReasonCode(code="SHORT_PICK"),
                                                lines=[Line(sku="SKU-2", quantity=1)]),
                   ReservationDeallocated(order_id=ORDER, location_id="WH-1", availability=[]),
                   RouteNotFound(order_id=ORDER, reason=ReasonCode(code="NO_LOCATION_WITH_STOCK")))
    told, adjust = only(step, OrderLinesCancelled), only(step, AdjustAuthorization)
    assert (told.lines, told.totals.total, told.amount_due) == ([Line(sku="SKU-2", quantity=1)], Decimal("20.00"),
                                                                Decimal("20.00"))
    assert (adjust.previous_amount, adjust.amount) == (Decimal("25.00"), Decimal("20.00"))
    assert step.saga.lines == (Line(sku="SKU-1", quantity=2),) and step.saga.placed_changed
    assert step.saga.state == "shipped"
    refused = edited_order(step.saga.placed, cancel_lines(("SKU-2", 1), edit_id="E2"))
    assert refused.code == "NOT_ON_ORDER"  # a customer cannot cancel, again, what is no longer on the order


def test_a_location_letting_go_of_the_whole_order_cancels_it_and_voids_the_authorisation():
    step = advance(awaiting_shipment(), FulfillmentCancelled(order_id=ORDER, location_id="WH-1",
                                                             fulfillment_order_id=FO, existed=True))
    assert step.saga.state == "cancelled"
    assert only(step, OrderCancelled).reason.code == "WITHDRAWN"
    assert only(step, VoidAuthorization).amount == Decimal("25.00")
