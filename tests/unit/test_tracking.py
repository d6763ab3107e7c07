"""The tracking read model's rules (pure), its OpenAPI document and its Kafka rights."""

import json
import random
import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from confluent_kafka.admin import AclOperation, ResourcePatternType, ResourceType

from ops.demo import sample_order
from ops.prepare import service_definitions
from ops.principals import service_principal
from ops.views import OPENAPI_PATH, render_openapi
from services.tracking.domain import Projection, advance, project, projection
from services.tracking.handlers import timeline_event
from shared.contracts.common import Line, ReasonCode
from shared.contracts.fulfillment import (FulfillmentAmended, FulfillmentOrderCreated, PartAmendment, ReturnedLine,
                                          ReturnReceived, ShipmentConfirmed)
from shared.contracts.money import ShipmentAmounts
from shared.contracts.notification import CustomerNotified
from shared.contracts.order_rules import order_id_for
from shared.contracts.payments import (Authorization, AuthorizationAdjusted, AuthorizationVoided, PaymentCaptured,
                                       PaymentCaptureFailed, PaymentRefunded)
from shared.contracts.orders import (Hold, OrderAccepted, OrderCancelled, OrderConfirmed, OrderEdited, OrderHeld,
                                     OrderHoldReleased, OrderLinesCancelled, OrderRejected, OrderShipped,
                                     ReturnApproved, ReturnRefunded)
from shared.contracts.topics import ORDER_COMMANDS

START = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)
AUTHORISED = Authorization(provider="stripe", reference="pi_1", amount=Decimal("79.96"))


def test_committed_openapi_document_is_current():
    assert OPENAPI_PATH.read_text() == render_openapi(), "run `./oms openapi` and commit docs/openapi.json"


def test_tracking_may_write_every_channels_command_topic_but_not_the_one_only_ops_writes():
    tracking = service_principal(next(s for s in service_definitions() if s.name == "tracking"))
    writes = {(acl.name, acl.resource_pattern_type) for acl in tracking.acls("test-1.")
              if acl.restype == ResourceType.TOPIC and acl.operation == AclOperation.WRITE}
    assert (f"test-1.{ORDER_COMMANDS}.", ResourcePatternType.PREFIXED) in writes
    assert not [name for name, _ in writes if name == f"test-1.{ORDER_COMMANDS}"]


def story(order_id: uuid.UUID, place=None):
    """An order shipped in two parcels from one fulfilment order, the last line short-picked, as the topics tell it."""
    place = place or sample_order(lines=[("CAP-BLACK", 2), ("TSHIRT-RED-M", 1), ("MUG-WHITE", 1)])
    fulfillment_order_id = uuid.uuid4()
    parcel = dict(fulfillment_order_id=fulfillment_order_id, order_id=order_id, location_id="WH-BERLIN",
                  carrier="DHL", shipped_at=START)
    return [
        OrderAccepted(order_id=order_id, channel=place.channel, channel_order_id=place.channel_order_id,
                      customer=place.customer, lines=place.lines, currency=place.currency, delivery=place.delivery,
                      totals=place.computed_totals(), payment=AUTHORISED),
        OrderConfirmed(order_id=order_id, location_id="WH-BERLIN", fulfillment_order_id=fulfillment_order_id),
        FulfillmentOrderCreated(fulfillment_order_id=fulfillment_order_id, order_id=order_id,
                                location_id="WH-BERLIN", lines=[Line(sku="CAP-BLACK", quantity=2)]),
        ShipmentConfirmed(**parcel, tracking_number="T-1", lines=[Line(sku="CAP-BLACK", quantity=1)], complete=False),
        OrderShipped(order_id=order_id, fulfillment_order_id=fulfillment_order_id, carrier="DHL",
                     tracking_number="T-1", lines=[Line(sku="CAP-BLACK", quantity=1)], complete=False),
        PaymentCaptured(order_id=order_id, capture_id=uuid.uuid5(order_id, "T-1"), amount=Decimal("19.99")),
        ShipmentConfirmed(**parcel, tracking_number="T-2",
                          lines=[Line(sku="CAP-BLACK", quantity=1), Line(sku="TSHIRT-RED-M", quantity=1)]),
        OrderLinesCancelled(order_id=order_id, lines=[Line(sku="MUG-WHITE", quantity=1)],
                            reason=ReasonCode(code="SHORT_PICK")),
        OrderShipped(order_id=order_id, fulfillment_order_id=fulfillment_order_id, carrier="DHL",
                     tracking_number="T-2", complete=True),
        PaymentCaptured(order_id=order_id, capture_id=uuid.uuid5(order_id, "T-2"), amount=Decimal("39.98")),
        AuthorizationVoided(order_id=order_id, amount=Decimal("19.99")),  # the short-picked mug's part
        CustomerNotified(notification_id=uuid.uuid4(), order_id=order_id, kind="order_shipped", channel="email"),
    ]


def events_of(payloads):
    return [timeline_event(p, uuid.uuid4(), START + timedelta(seconds=i)) for i, p in enumerate(payloads)]


def test_an_order_shipped_in_two_parcels_with_a_short_pick_shows_each_line_and_parcel():
    order_id = uuid.uuid4()
    view = project(events_of(story(order_id)))
    assert view.status == "shipped"
    assert [(line.sku, line.shipped, line.cancelled, line.status) for line in view.lines] == [
        ("CAP-BLACK", 2, 0, "shipped"), ("TSHIRT-RED-M", 1, 0, "shipped"), ("MUG-WHITE", 0, 1, "cancelled")]
    assert [(s.carrier, s.tracking_number) for s in view.shipments] == [("DHL", "T-1"), ("DHL", "T-2")]
    assert [f.status for f in view.fulfillment_orders] == ["shipped"]
    assert [n.kind for n in view.notifications] == ["order_shipped"]
    assert view.customer_id == "C-1" and view.delivery.city == "Frankfurt"
    assert view.total == Decimal("79.96")
    payment = view.payment
    assert (payment.status, payment.provider, payment.authorised, payment.captured, payment.voided) == (
        "captured", "stripe", Decimal("79.96"), Decimal("59.97"), Decimal("19.99"))
    assert [(c.status, c.amount) for c in payment.captures] == [("captured", Decimal("19.99")),
                                                                ("captured", Decimal("39.98"))]


def test_the_view_is_the_same_whatever_order_and_however_often_its_events_arrive():
    events = events_of(story(uuid.uuid4()))
    shuffled = events + random.Random(7).sample(events, len(events))
    assert project(shuffled) == project(events)


def whole_life(order_id: uuid.UUID):
    """Held, edited, released, confirmed, amended, shipped in two parcels with a short pick, paid, voided, told,
    returned and refunded, a capture answered twice: every kind of change the view shows."""
    place = sample_order(lines=[("CAP-BLACK", 2), ("TSHIRT-RED-M", 1), ("MUG-WHITE", 1)])
    accepted, confirmed, created, *shipping = story(order_id, place)
    hold = Hold(reason="fraud_review", placed_by="rule")
    edited = place.model_copy(update={"lines": [place.lines[0].model_copy(update={"quantity": 3}), *place.lines[1:]]})
    edit = OrderEdited(order_id=order_id, channel=place.channel, channel_order_id=place.channel_order_id,
                       edit_id="E1", lines=edited.lines, currency="EUR", delivery=place.delivery,
                       added=[Line(sku="CAP-BLACK", quantity=1)], totals=edited.computed_totals(),
                       amount_due=edited.computed_totals().total)
    amended = FulfillmentAmended(order_id=order_id, edit_id="E1", parts=[PartAmendment(
        fulfillment_order_id=uuid.uuid4(), location_id="WH-MUNICH", lines=[])])
    refund = ShipmentAmounts(channel="web", channel_order_id="W-1", currency="EUR", lines=[], shipping=0,
                             shipping_tax=0, tax=0, total=Decimal("9.99"), prices_include_tax=False)
    captured_again = next(e for e in shipping if isinstance(e, PaymentCaptured)).model_copy()
    return [accepted, OrderHeld(order_id=order_id, hold=hold), edit,
            AuthorizationAdjusted(order_id=order_id, adjustment_id="E1", amount=Decimal("99.95")),
            OrderHoldReleased(order_id=order_id, reason="fraud_review", released_by="ops"), confirmed, created,
            amended, *shipping, captured_again,
            ReturnApproved(order_id=order_id, return_id="R1", return_to="WH-BERLIN",
                           lines=[{"sku": "CAP-BLACK", "quantity": 1, "reason": "TOO_SMALL"}]),
            ReturnReceived(order_id=order_id, return_id="R1", location_id="WH-BERLIN", received_at=START,
                           lines=[ReturnedLine(sku="CAP-BLACK", quantity=1, condition="restock")]),
            ReturnRefunded(order_id=order_id, return_id="R1", location_id="WH-BERLIN", refund=refund,
                           restocked=[Line(sku="CAP-BLACK", quantity=1)], disposed=[]),
            PaymentRefunded(order_id=order_id, refund_id="R1", amount=Decimal("9.99"))]


def cancelled_life(order_id: uuid.UUID):
    accepted, confirmed, created = story(order_id)[:3]
    return [accepted, confirmed, created, OrderLinesCancelled(order_id=order_id, reason=ReasonCode(code="SHORT_PICK"),
                                                              lines=[Line(sku="MUG-WHITE", quantity=1)]),
            OrderCancelled(order_id=order_id, reason=ReasonCode(code="CUSTOMER_CANCELLED"), stage="awaiting_shipment"),
            AuthorizationVoided(order_id=order_id, amount=Decimal("79.96"))]


def stored(projected: Projection) -> tuple[str, dict]:
    """As the orders table keeps it: the view (read as JSON text) and where it stands, through JSON."""
    return projected.view.model_dump_json(), json.loads(json.dumps(projected.progress()))


@pytest.mark.parametrize("life", [whole_life, cancelled_life, lambda order_id: story(order_id)])
def test_events_applied_to_the_stored_view_one_by_one_or_together_show_what_projecting_them_all_shows(life):
    events = events_of(life(uuid.uuid4()))
    standing = projection(events[:1])
    for arrived in range(2, len(events) + 1):
        standing = advance(*stored(standing), [events[arrived - 1]])
        assert standing.view == project(events[:arrived]), f"after {events[arrived - 1].type}"
    for split in range(1, len(events)):
        assert advance(*stored(projection(events[:split])), events[split:]).view == project(events)


def test_an_event_that_sorts_before_what_the_view_has_applied_is_left_to_projecting_them_all():
    events = events_of(story(uuid.uuid4()))
    late = events[3]
    standing = stored(projection([e for e in events if e is not late]))
    assert advance(*standing, [late]) is None
    assert advance(*standing, [late, events[-1]]) is None
    assert advance(*standing, [events[-1]]) is None, "already applied: it does not sort after itself"


def test_a_cancelled_order_cancels_what_did_not_ship_and_says_why():
    order_id = uuid.uuid4()
    accepted, confirmed = story(order_id)[:2]
    view = project(events_of([accepted, confirmed, OrderCancelled(
        order_id=order_id, reason=ReasonCode(code="CUSTOMER_CANCELLED"), stage="awaiting_shipment")]))
    assert view.status == "cancelled" and [r.code for r in view.reasons] == ["CUSTOMER_CANCELLED"]
    assert {line.status for line in view.lines} == {"cancelled"}


def test_holds_in_force_are_shown_until_released():
    order_id = uuid.uuid4()
    accepted = story(order_id)[0]
    hold = Hold(reason="fraud_review", placed_by="rule")
    held = [accepted, OrderHeld(order_id=order_id, hold=hold),
            OrderHeld(order_id=order_id, hold=hold.model_copy(update={"reason": "address_check"}))]
    assert project(events_of(held)).holds == ["fraud_review", "address_check"]
    released = held + [OrderHoldReleased(order_id=order_id, reason="fraud_review", released_by="ops")]
    assert project(events_of(released)).holds == ["address_check"]


def test_a_rejected_order_is_shown_with_its_reason_codes():
    rejected = OrderRejected(order_id=None, channel="web", channel_order_id="W-1",
                             reasons=[ReasonCode(code="INVALID_SKU")])
    [event] = events_of([rejected])
    view = project([event])
    assert (view.order_id, view.status, [r.code for r in view.reasons]) == (
        order_id_for("web", "W-1"), "rejected", ["INVALID_SKU"])


def test_the_timeline_keeps_no_personal_data_and_events_before_the_order_show_nothing_yet():
    order_id = uuid.uuid4()
    events = events_of(story(order_id))
    kept = repr([e.data for e in events])
    assert "customer@example.com" not in kept and "A. Customer" not in kept and "line1" not in kept
    assert project(events[1:]) is None  # fulfilment news of an order whose acceptance has not arrived yet


def test_returns_show_from_approval_to_refund():
    order_id = uuid.uuid4()
    back = [{"sku": "CAP-BLACK", "quantity": 1, "reason": "TOO_SMALL"}]
    refund = ShipmentAmounts(channel="web", channel_order_id="W-1", currency="EUR", lines=[], shipping=0,
                             shipping_tax=0, tax=0, total=Decimal("9.99"), prices_include_tax=False)
    events = story(order_id) + [
        ReturnApproved(order_id=order_id, return_id="R1", lines=back, return_to="WH-BERLIN"),
        ReturnReceived(order_id=order_id, return_id="R1", location_id="WH-BERLIN", received_at=START,
                       lines=[ReturnedLine(sku="CAP-BLACK", quantity=1, condition="restock")])]
    assert [(r.return_id, r.status) for r in project(events_of(events)).returns] == [("R1", "received")]
    refunded = events + [ReturnRefunded(order_id=order_id, return_id="R1", location_id="WH-BERLIN", refund=refund,
                                        restocked=[Line(sku="CAP-BLACK", quantity=1)], disposed=[])]
    [shown] = project(events_of(refunded)).returns
    assert (shown.status, shown.refund, shown.return_to) == ("refunded", Decimal("9.99"), "WH-BERLIN")


def payment_of(order_id, *events):
    return project(events_of([story(order_id)[0], *events])).payment


def test_a_failed_capture_shows_until_the_same_capture_is_taken_and_each_capture_counts_once():
    order_id, capture_id = uuid.uuid4(), uuid.uuid4()
    failed = PaymentCaptureFailed(order_id=order_id, capture_id=capture_id,
                                  reason=ReasonCode(code="INSUFFICIENT_FUNDS"))
    shown = payment_of(order_id, failed)
    assert shown.status == "capture_failed" and [c.reason.code for c in shown.captures] == ["INSUFFICIENT_FUNDS"]
    captured = PaymentCaptured(order_id=order_id, capture_id=capture_id, amount=Decimal("30.00"))
    shown = payment_of(order_id, failed, captured, captured.model_copy(), failed)  # answered again: counted once
    assert (shown.status, shown.captured, [c.status for c in shown.captures]) == (
        "partially_captured", Decimal("30.00"), ["captured"])


def test_refunds_count_once_per_return_and_a_void_without_captures_charges_nothing():
    order_id = uuid.uuid4()
    assert payment_of(order_id).status == "authorised"
    assert payment_of(order_id, AuthorizationVoided(order_id=order_id, amount=Decimal("79.96"))).status == "voided"
    captured = PaymentCaptured(order_id=order_id, capture_id=uuid.uuid4(), amount=Decimal("79.96"))
    refund = PaymentRefunded(order_id=order_id, refund_id="R1", amount=Decimal("19.99"))
    shown = payment_of(order_id, captured, refund, refund.model_copy())
    assert (shown.status, shown.refunded, [r.refund_id for r in shown.refunds]) == (
        "partially_refunded", Decimal("19.99"), ["R1"])
    whole = PaymentRefunded(order_id=order_id, refund_id="R2", amount=Decimal("59.97"))
    assert payment_of(order_id, captured, refund, whole).status == "refunded"


def test_an_order_without_a_reported_authorisation_shows_no_payment_until_the_payment_service_answers():
    order_id = uuid.uuid4()
    accepted = story(order_id)[0].model_copy(update={"payment": None})
    assert project(events_of([accepted])).payment.status == "none"
    captured = PaymentCaptured(order_id=order_id, capture_id=uuid.uuid4(), amount=Decimal("10.00"))
    assert project(events_of([accepted, captured])).payment.status == "partially_captured"


def test_an_edit_sets_the_lines_total_and_authorisation_and_its_address_stays_out_of_the_timeline():
    order_id = uuid.uuid4()
    place = sample_order(lines=[("CAP-BLACK", 2)])
    accepted = story(order_id, place)[0]
    edited_order = place.model_copy(update={"lines": [place.lines[0].model_copy(update={"quantity": 3})]})
    edit = OrderEdited(order_id=order_id, channel=place.channel, channel_order_id=place.channel_order_id,
                       edit_id="E1", lines=edited_order.lines, currency="EUR", delivery=place.delivery,
                       added=[Line(sku="CAP-BLACK", quantity=1)], totals=edited_order.computed_totals(),
                       amount_due=edited_order.computed_totals().total)
    adjusted = AuthorizationAdjusted(order_id=order_id, adjustment_id="E1", amount=Decimal("59.97"))
    events = events_of([accepted, edit, adjusted])
    assert "line1" not in repr(events[1].data) and events[1].data["delivery"]["city"] == "Frankfurt"
    view = project(events)
    assert [(line.sku, line.quantity) for line in view.lines] == [("CAP-BLACK", 3)]
    assert (view.total, view.payment.authorised) == (Decimal("59.97"), Decimal("59.97"))


def test_an_amendment_withdrawing_a_fulfilment_order_cancels_it_and_one_changing_lines_leaves_it():
    order_id = uuid.uuid4()
    accepted, confirmed, created = story(order_id)[:3]
    fulfillment_order_id = created.fulfillment_order_id
    other = uuid.uuid4()
    amended = FulfillmentAmended(order_id=order_id, edit_id="E1", parts=[
        PartAmendment(fulfillment_order_id=fulfillment_order_id, location_id="WH-BERLIN",
                      lines=[Line(sku="CAP-BLACK", quantity=1)]),
        PartAmendment(fulfillment_order_id=other, location_id="WH-MUNICH", lines=[])])
    view = project(events_of([accepted, confirmed, created, amended]))
    assert {(f.fulfillment_order_id, f.status) for f in view.fulfillment_orders} == {
        (fulfillment_order_id, "requested"), (other, "cancelled")}
