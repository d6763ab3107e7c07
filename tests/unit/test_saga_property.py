"""The saga against a random world (pure, Hypothesis): whatever the locations, the customer and the clock do, in
whatever order, the saga never raises, and a state that waits for an answer always has a command to send again
on its deadline (else the order stalls there for good)."""

import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from shared.contracts.common import Assignment, Line, ReasonCode, ShipTo
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
    RequestFulfillment,
    ShipmentConfirmed,
    fulfillment_order_id,
    shipment_id,
)
from shared.contracts.inventory import (
    AllocateReservation,
    AllocationFailed,
    DeallocateReservation,
    ExtendReservation,
    LocationAvailability,
    ReservationAllocated,
    ReservationDeallocated,
    ReservationExpired,
    ReservationExtended,
    ReservationExtensionRefused,
    ReserveStock,
    StockReserved,
    StockUnavailable,
)
from shared.contracts.orders import CancelOrderLines, EditOrder, Hold, PlaceOrder
from shared.contracts.payments import CapturePayment, PaymentCaptured
from shared.contracts.routing import OrderRouted, RouteNotFound, RouteOrder

from ops.demo import address
from services.capture import saga as s
from services.capture.edits import edited_order

LOCATIONS = ("WH-1", "WH-2", "WH-3")
SKUS = ("SKU-1", "SKU-2")
NOW = datetime(2026, 1, 1, tzinfo=UTC)


def _placed(order_id: uuid.UUID) -> dict:
    return PlaceOrder.model_validate({
        "channel": "web", "channel_order_id": str(order_id), "currency": "EUR",
        "customer": {"customer_id": "C-1", "email": "c@example.org", "name": "C"},
        "lines": [{"sku": "SKU-1", "quantity": 2, "unit_price": "10.00"},
                  {"sku": "SKU-2", "quantity": 1, "unit_price": "5.00"}],
        "delivery": {"type": "ship", "address": address().model_dump(mode="json")},
        "payment": {"provider": "psp", "reference": "auth-1", "amount": "25.00"}}).model_dump(mode="json")


@dataclass
class Location:
    """What a location holds of the order: its fulfilment orders and their open lines."""
    orders: dict[uuid.UUID, list[Line]] = field(default_factory=dict)


class SagaInARandomWorld(RuleBasedStateMachine):
    @initialize()
    def place(self):
        self.order_id = uuid.UUID(int=1)
        placed = _placed(self.order_id)
        saga = s.Saga(order_id=self.order_id, state="new", channel="web", channel_order_id=str(self.order_id),
                      lines=(Line(sku="SKU-1", quantity=2), Line(sku="SKU-2", quantity=1)),
                      delivery=ShipTo(address=address()), placed=placed)
        self.sent: list = []  # every command the saga sent, answered or not
        self.answers: list = []  # every answer the world gave (to deliver again, late)
        self.fulfilment: dict[uuid.UUID, tuple[str, list[Line]]] = {}  # open fulfilment orders at locations
        self.edits = 0
        self._take(s.start(saga))

    def _take(self, step: s.Step | None):
        if step is None:
            return
        self.saga = step.saga
        self.sent += [m for m in step.messages if isinstance(m, COMMANDS)]

    def _deliver(self, reply):
        self.answers.append(reply)
        self._take(s.advance(self.saga, reply))

    # --- the world answers a command it was sent (any of them, in any order, more than once) ---------------------

    @precondition(lambda self: self.sent)
    @rule(age=st.integers(0, 5), fails=st.integers(0, 5), data=st.data())
    def answer(self, age, fails, data):
        command = self.sent[-1 - min(age, len(self.sent) - 1)]  # mostly the latest, sometimes an older one
        reply = ANSWER[type(command)](self, command, fails != 3, data)
        if reply is not None:
            self._deliver(reply)

    @precondition(lambda self: self.answers)
    @rule(data=st.data())
    def deliver_late(self, data):
        self._take(s.advance(self.saga, data.draw(st.sampled_from(self.answers))))

    # --- locations act on their own --------------------------------------------------------------------------

    @precondition(lambda self: self.fulfilment)
    @rule(data=st.data(), everything=st.booleans())
    def ship(self, data, everything):
        fo = data.draw(st.sampled_from(sorted(self.fulfilment)))
        location, lines = self.fulfilment[fo]
        shipped = lines if everything else [Line(sku=lines[0].sku, quantity=1)]
        rest = _minus(lines, shipped)
        tracking = f"T{len(self.answers)}"
        self._settle(fo, location, rest)
        self._deliver(ShipmentConfirmed(fulfillment_order_id=fo, order_id=self.order_id, location_id=location,
                                        shipment_id=shipment_id(fo, tracking), lines=shipped, carrier="DHL",
                                        tracking_number=tracking, shipped_at=NOW, complete=not rest))

    @precondition(lambda self: self.fulfilment)
    @rule(data=st.data())
    def reject(self, data):
        fo = data.draw(st.sampled_from(sorted(self.fulfilment)))
        location, lines = self.fulfilment.pop(fo)
        self._deliver(FulfillmentRejected(fulfillment_order_id=fo, order_id=self.order_id, location_id=location,
                                          reason=ReasonCode(code="SHORT_PICK"), lines=lines))

    @precondition(lambda self: self.fulfilment)
    @rule(data=st.data())
    def withdraw_on_its_own(self, data):
        fo = data.draw(st.sampled_from(sorted(self.fulfilment)))
        location, _ = self.fulfilment.pop(fo)
        self._deliver(FulfillmentCancelled(order_id=self.order_id, location_id=location, fulfillment_order_id=fo,
                                           existed=True))

    @precondition(lambda self: self.fulfilment)
    @rule(data=st.data(), status=st.sampled_from(["accepted", "picked", "packed"]))
    def progress(self, data, status):
        fo = data.draw(st.sampled_from(sorted(self.fulfilment)))
        self._deliver(FulfillmentOrderProgressed(fulfillment_order_id=fo, order_id=self.order_id,
                                                 location_id=self.fulfilment[fo][0], status=status))

    @precondition(lambda self: any(isinstance(a, ShipmentConfirmed) for a in self.answers))
    @rule(data=st.data())
    def deliver_parcel(self, data):
        shipped = data.draw(st.sampled_from([a for a in self.answers if isinstance(a, ShipmentConfirmed)]))
        self._deliver(DeliveryConfirmed(fulfillment_order_id=shipped.fulfillment_order_id, order_id=self.order_id,
                                        location_id=shipped.location_id, delivered_at=NOW))

    @rule(rarely=st.integers(0, 19))
    def expire(self, rarely):
        if rarely == 7:
            self._deliver(ReservationExpired(order_id=self.order_id, lines=list(self.saga.lines)))

    # --- the customer and the clock ---------------------------------------------------------------------------

    @rule(rarely=st.integers(0, 19))
    def cancel(self, rarely):
        if rarely == 7:
            self._take(s.request_cancel(self.saga, "changed my mind"))

    @rule(reason=st.sampled_from(["address_check", "fraud_review"]))
    def hold(self, reason):
        self._take(s.hold(self.saga, Hold(reason=reason, placed_by="ops")))

    @precondition(lambda self: self.saga.holds)
    @rule(data=st.data())
    def release(self, data):
        held = data.draw(st.sampled_from(self.saga.holds))
        self._take(s.release_hold(self.saga, held.reason, "ops"))

    @precondition(lambda self: self.saga.state in s.EDITABLE)
    @rule(kind=st.sampled_from(["remove", "add", "move"]), which=st.integers(0, 1))
    def edit(self, kind, which):
        self.edits += 1
        edit_id = f"E{self.edits}"
        channel = dict(channel="web", channel_order_id=str(self.order_id), edit_id=edit_id)
        placed = self.saga.placed
        if kind == "remove":
            line = placed["lines"][min(which, len(placed["lines"]) - 1)]
            command = CancelOrderLines(**channel, lines=[Line(sku=line["sku"], quantity=1)])
        elif kind == "add":
            command = EditOrder(**channel, lines=[{**line, "quantity": line["quantity"] + 1}
                                                  for line in placed["lines"]])
        else:
            city = ("Hamburg", "Munich", "Berlin")[self.edits % 3]
            command = EditOrder(**channel, delivery=ShipTo(address=address(city)))
        edited = edited_order(placed, command)
        if isinstance(edited, dict) and edited["lines"]:
            self._take(s.request_edit(self.saga, edit_id, edited))

    @precondition(lambda self: self.saga.state in s.WAITING or self.saga.state == "held")
    @rule(rarely=st.integers(0, 4))
    def deadline_passes(self, rarely):
        if rarely == 3:
            self._take(s.on_timeout(self.saga, NOW))

    def _settle(self, fo: uuid.UUID, location: str, rest: list[Line]):
        if rest:
            self.fulfilment[fo] = (location, rest)
        else:
            self.fulfilment.pop(fo, None)

    @invariant()
    def a_waiting_state_has_something_to_send_again(self):
        if hasattr(self, "saga") and self.saga.state in s.WAITING:
            assert s.pending_commands(self.saga), self.saga

    @invariant()
    def an_order_awaiting_shipment_has_a_location_working_on_it(self):
        if hasattr(self, "saga") and self.saga.state == "awaiting_shipment":
            assert self.saga.parts_in(*s.LIVE), self.saga


def _minus(lines: list[Line], taken: list[Line]) -> list[Line]:
    off = {line.sku: line.quantity for line in taken}
    return [Line(sku=line.sku, quantity=line.quantity - off.get(line.sku, 0)) for line in lines
            if line.quantity > off.get(line.sku, 0)]


def _reserve(world, command: ReserveStock, good, data):
    if not good:
        return StockUnavailable(order_id=command.order_id, reason=ReasonCode(code="OUT_OF_STOCK"), shortages=[])
    return StockReserved(order_id=command.order_id, lines=command.lines, availability=[
        LocationAvailability(location_id=location, sku=sku, available=9) for location in LOCATIONS for sku in SKUS])


def _route(world, command: RouteOrder, good, data):
    candidates = [location for location in LOCATIONS if location not in command.exclude_locations]
    if not good or not candidates:
        return RouteNotFound(order_id=command.order_id, reason=ReasonCode(code="NO_LOCATION_WITH_STOCK"))
    chosen = data.draw(st.lists(st.sampled_from(candidates), min_size=1, max_size=2, unique=True))
    lines = command.lines
    if len(chosen) == 2 and len(lines) > 1:
        assignments = [Assignment(location_id=chosen[0], lines=lines[:1]),
                       Assignment(location_id=chosen[1], lines=lines[1:])]
    else:
        assignments = [Assignment(location_id=chosen[0], lines=lines)]
    return OrderRouted(order_id=command.order_id, location_id=assignments[0].location_id, explanation="x",
                       assignments=assignments)


def _allocate(world, command: AllocateReservation, good, data):
    if good:
        return ReservationAllocated(order_id=command.order_id, location_id=command.location_id)
    return AllocationFailed(order_id=command.order_id, location_id=command.location_id,
                            reason=ReasonCode(code="LOCATION_SHORT"))


def _deallocate(world, command: DeallocateReservation, good, data):
    return ReservationDeallocated(order_id=command.order_id, location_id=command.location_id, availability=[])


def _request(world, command: RequestFulfillment, good, data):
    fo = command.fulfillment_order_id or fulfillment_order_id(command.order_id, command.location_id)
    if not good:
        return FulfillmentRejected(fulfillment_order_id=fo, order_id=command.order_id,
                                   location_id=command.location_id, reason=ReasonCode(code="NO_CAPACITY"))
    world.fulfilment.setdefault(fo, (command.location_id, list(command.lines)))
    return FulfillmentOrderCreated(fulfillment_order_id=fo, order_id=command.order_id,
                                   location_id=command.location_id, lines=command.lines)


def _withdraw(world, command: CancelFulfillment, good, data):
    fo = command.fulfillment_order_id or fulfillment_order_id(command.order_id, command.location_id)
    existed = world.fulfilment.pop(fo, None) is not None
    return FulfillmentCancelled(order_id=command.order_id, location_id=command.location_id,
                                fulfillment_order_id=fo, existed=existed)


def _extend(world, command: ExtendReservation, good, data):
    if good:
        return ReservationExtended(order_id=command.order_id, edit_id=command.edit_id, lines=command.lines)
    return ReservationExtensionRefused(order_id=command.order_id, edit_id=command.edit_id,
                                       reason=ReasonCode(code="OUT_OF_STOCK"))


def _amend(world, command: AmendFulfillment, good, data):
    if not good:
        part = command.parts[0]
        return FulfillmentAmendmentRefused(order_id=command.order_id, edit_id=command.edit_id,
                                           fulfillment_order_id=part.fulfillment_order_id,
                                           location_id=part.location_id, reason=ReasonCode(code="ALREADY_PICKED"))
    for part in command.parts:
        if part.fulfillment_order_id in world.fulfilment:
            world._settle(part.fulfillment_order_id, part.location_id, list(part.lines))
    return FulfillmentAmended(order_id=command.order_id, edit_id=command.edit_id, parts=command.parts)


def _capture(world, command: CapturePayment, good, data):
    return PaymentCaptured(order_id=command.order_id, capture_id=command.capture_id, amount=command.amount)


ANSWER = {ReserveStock: _reserve, RouteOrder: _route, AllocateReservation: _allocate,
          DeallocateReservation: _deallocate, RequestFulfillment: _request, CancelFulfillment: _withdraw,
          ExtendReservation: _extend, AmendFulfillment: _amend, CapturePayment: _capture}
COMMANDS = tuple(ANSWER)

TestSagaInARandomWorld = SagaInARandomWorld.TestCase
TestSagaInARandomWorld.settings = settings(max_examples=400, stateful_step_count=80, deadline=None,
                                           suppress_health_check=[HealthCheck.too_slow])
