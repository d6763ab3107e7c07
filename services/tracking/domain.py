"""The read model's rules, pure: an order's view is a function of its events, applied in time order.

Replaying the same events — redelivered, late, or all of them again in a rebuild — gives the same view."""

from collections import Counter
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any
from uuid import UUID

from pydantic import BaseModel, Field

from shared.contracts.common import ReasonCode


@dataclass(frozen=True)
class TimelineEvent:
    """One consumed event of an order, as the `events` table keeps it."""

    event_id: UUID
    order_id: UUID
    at: datetime
    type: str  # the contract's name, e.g. OrderShipped
    topic: str
    data: dict[str, Any]

    def sort_key(self) -> tuple:
        return self.at, self.topic, str(self.event_id)


class LineView(BaseModel):
    sku: str
    quantity: int
    unit_price: Decimal | None = None
    shipped: int = 0
    cancelled: int = 0
    status: str = Field("open", examples=["open", "partially_shipped", "shipped", "delivered", "ready_for_pickup",
                                          "picked_up", "cancelled"])


class FulfillmentOrderView(BaseModel):
    fulfillment_order_id: UUID
    location_id: str
    status: str = Field(examples=["requested", "accepted", "picked", "packed", "partially_shipped", "shipped",
                                  "delivered", "ready_for_pickup", "picked_up", "rejected", "cancelled", "expired"])
    reason: ReasonCode | None = None


class ShipmentView(BaseModel):
    shipment_id: UUID
    fulfillment_order_id: UUID
    location_id: str
    carrier: str
    tracking_number: str
    lines: list[dict[str, Any]]
    shipped_at: datetime
    delivered_at: datetime | None = None


class NotificationView(BaseModel):
    notification_id: UUID
    kind: str
    channel: str
    at: datetime


class ReturnView(BaseModel):
    return_id: str
    status: str = Field(examples=["approved", "received", "refunded"])
    return_to: str
    lines: list[dict[str, Any]]
    refund: Decimal | None = Field(None, description="What the returned units were worth")
    exchange_order_id: UUID | None = None


class CaptureView(BaseModel):
    capture_id: UUID = Field(description="The shipment's id (one capture per parcel)")
    status: str = Field(examples=["captured", "failed"])
    amount: Decimal | None = None
    reason: ReasonCode | None = Field(None, description="Why the provider declined it")
    at: datetime


class RefundView(BaseModel):
    refund_id: str = Field(description="The return's id")
    amount: Decimal
    at: datetime


class PaymentView(BaseModel):
    """What the payment service reported for the order (payments.events.v1), beside what was authorised."""

    status: str = Field("none", examples=["none", "authorised", "partially_captured", "captured", "capture_failed",
                                          "voided", "partially_refunded", "refunded"])
    provider: str | None = None
    authorised: Decimal | None = Field(None, description="What the channel's payment provider authorised")
    captured: Decimal = Decimal(0)
    refunded: Decimal = Decimal(0)
    voided: Decimal | None = Field(None, description="What was left of the authorisation when it was released")
    captures: list[CaptureView] = Field(default_factory=list)
    refunds: list[RefundView] = Field(default_factory=list)


class DeliveryView(BaseModel):
    """How the order reaches the customer, without who or where exactly (no personal data in the view)."""

    type: str = Field(examples=["ship", "pickup"])
    store_id: str | None = None
    city: str | None = None
    country: str | None = None


class OrderView(BaseModel):
    order_id: UUID
    channel: str
    channel_order_id: str
    customer_id: str | None = None
    status: str = Field(examples=["accepted", "rejected", "backordered", "confirmed", "partially_shipped", "shipped",
                                  "delivered", "ready_for_pickup", "picked_up", "cancelled"])
    reasons: list[ReasonCode] = Field(default_factory=list, description="Why it was rejected or cancelled")
    holds: list[str] = Field(default_factory=list, description="Holds in force (the order waits while any is)",
                             examples=[["fraud_review"]])
    currency: str | None = None
    total: Decimal | None = Field(None, description="What the order charges (goods, shipping, tax)")
    delivery: DeliveryView | None = None
    placed_at: datetime
    updated_at: datetime
    lines: list[LineView] = Field(default_factory=list)
    fulfillment_orders: list[FulfillmentOrderView] = Field(default_factory=list)
    shipments: list[ShipmentView] = Field(default_factory=list)
    notifications: list[NotificationView] = Field(default_factory=list)
    returns: list[ReturnView] = Field(default_factory=list)
    payment: PaymentView = Field(default_factory=PaymentView)


# Statuses an order event sets; the others (OrderLinesCancelled, OrderCancellationRejected) leave it.
ORDER_STATUS = {"OrderAccepted": "accepted", "OrderRejected": "rejected", "OrderBackordered": "backordered",
                "OrderConfirmed": "confirmed", "OrderReadyForPickup": "ready_for_pickup",
                "OrderPickedUp": "picked_up", "OrderDelivered": "delivered", "OrderCancelled": "cancelled"}
FULFILLMENT_STATUS = {"FulfillmentOrderCreated": "requested", "DeliveryConfirmed": "delivered",
                      "PickupCompleted": "picked_up", "PickupExpired": "expired", "FulfillmentRejected": "rejected",
                      "FulfillmentCancelled": "cancelled"}


def redacted(type_: str, data: dict[str, Any]) -> dict[str, Any]:
    """What the timeline keeps of an event: everything but the customer's personal data (name, email, address:
    in an order's acceptance, and in each edit, which carries the delivery as it now stands)."""
    if type_ not in ("OrderAccepted", "OrderEdited"):
        return data
    delivery = data["delivery"]
    address = delivery.get("address") or {}
    kept_delivery = {"type": delivery["type"], "store_id": delivery.get("store_id"),
                     "city": address.get("city"), "country": address.get("country")}
    kept = {**data, "delivery": {k: v for k, v in kept_delivery.items() if v is not None}}
    if "customer" in data:
        kept["customer"] = {"customer_id": data["customer"]["customer_id"]}
    return kept


@dataclass(frozen=True)
class Projection:
    """An order's view and where it stands: the last event applied (its sort key) and the units cancelled so far
    (the view shows them shared out over its lines), so that later events can be applied to it as it stands."""

    view: OrderView
    last: tuple
    cancelled: Counter[str]

    def progress(self) -> dict[str, Any]:
        """Where it stands, as the `orders.progress` column keeps it beside the view."""
        at, topic, event_id = self.last
        return {"at": at.isoformat(), "topic": topic, "event_id": event_id, "cancelled": dict(self.cancelled)}


def project(events: list[TimelineEvent]) -> OrderView | None:
    """The order's view from its events; None while no event has told which channel's order it is."""
    projected = projection(events)
    return None if projected is None else projected.view


def projection(events: list[TimelineEvent]) -> Projection | None:
    ordered = sorted({e.event_id: e for e in events}.values(), key=TimelineEvent.sort_key)  # each event once
    start = next((e for e in ordered if e.type in ("OrderAccepted", "OrderRejected")), None)
    if start is None:
        return None
    view = OrderView(order_id=start.order_id, channel=start.data["channel"],
                     channel_order_id=start.data["channel_order_id"], status="accepted", placed_at=start.at,
                     updated_at=start.at)
    return _applied(view, Counter(), ordered)


def advance(view: str, progress: dict[str, Any], new_events: list[TimelineEvent]) -> Projection | None:
    """The view after events not applied yet, from the view as stored (its JSON text) and where it stands: the same as
    projecting all the events again, as long as none of the new ones sorts before the last one applied. If one
    does (a late event), None: only projecting them all places it."""
    ordered = sorted({e.event_id: e for e in new_events}.values(), key=TimelineEvent.sort_key)
    last = (datetime.fromisoformat(progress["at"]), progress["topic"], progress["event_id"])
    if not ordered or ordered[0].sort_key() <= last:
        return None
    return _applied(OrderView.model_validate_json(view), Counter(progress["cancelled"]), ordered)


def _applied(view: OrderView, cancelled: Counter[str], ordered: list[TimelineEvent]) -> Projection:
    for event in ordered:
        _apply(view, event, cancelled)
    view.updated_at = ordered[-1].at
    _share_out_line_statuses(view, cancelled.copy())
    view.payment.status = _payment_status(view.payment, view.total)
    return Projection(view, ordered[-1].sort_key(), cancelled)


def _apply(view: OrderView, event: TimelineEvent, cancelled: Counter[str]) -> None:
    data = event.data
    if event.type in ORDER_STATUS:
        view.status = ORDER_STATUS[event.type]
    match event.type:
        case "OrderAccepted":
            view.customer_id = data["customer"]["customer_id"]
            _apply_order_as_it_stands(view, data)
            if authorisation := data.get("payment"):
                view.payment.provider, view.payment.authorised = authorisation["provider"], Decimal(
                    authorisation["amount"])
        case "OrderEdited":
            _apply_order_as_it_stands(view, data)
        case "OrderRejected":
            view.reasons = [ReasonCode(**reason) for reason in data["reasons"]]
        case "OrderCancelled":
            view.reasons = [ReasonCode(**data["reason"])]
        case "OrderShipped":
            view.status = "shipped" if data["complete"] else "partially_shipped"
        case "OrderHeld" if data["hold"]["reason"] not in view.holds:
            view.holds.append(data["hold"]["reason"])
        case "OrderHoldReleased" if data["reason"] in view.holds:
            view.holds.remove(data["reason"])
        case "OrderLinesCancelled":
            cancelled.update({line["sku"]: line["quantity"] for line in data["lines"]})
            if data.get("totals"):
                view.total = Decimal(data["totals"]["total"])
        case "ReturnApproved" if all(r.return_id != data["return_id"] for r in view.returns):
            view.returns.append(ReturnView(return_id=data["return_id"], status="approved", lines=data["lines"],
                                           return_to=data["return_to"],
                                           exchange_order_id=data.get("exchange_order_id")))
        case "ReturnReceived" | "ReturnRefunded":
            _apply_return(view, event)
        case "CustomerNotified":
            view.notifications.append(NotificationView(notification_id=data["notification_id"], kind=data["kind"],
                                                       channel=data["channel"], at=event.at))
        case _ if event.topic.startswith("fulfillment."):
            _apply_fulfillment(view, event)
        case _ if event.topic.startswith("payments."):
            _apply_payment(view.payment, event)


def _apply_order_as_it_stands(view: OrderView, data: dict[str, Any]) -> None:
    """Lines, delivery and total from the order's acceptance, or from an edit (the order as it now stands)."""
    view.currency = data["currency"]
    view.delivery = DeliveryView(**data["delivery"])
    view.lines = [LineView(sku=line["sku"], quantity=line["quantity"], unit_price=Decimal(line["unit_price"]))
                  for line in data["lines"]]
    view.total = Decimal(data["totals"]["total"]) if data.get("totals") else None


def _apply_payment(payment: PaymentView, event: TimelineEvent) -> None:
    """Each capture and refund counts once, by its id; a capture that failed and was then taken shows taken."""
    data = event.data
    match event.type:
        case "PaymentCaptured" | "PaymentCaptureFailed":
            capture_id = UUID(data["capture_id"])
            earlier = next((c for c in payment.captures if c.capture_id == capture_id), None)
            if earlier is not None and earlier.status == "captured":
                return
            if earlier is not None:
                payment.captures.remove(earlier)
            if event.type == "PaymentCaptured":
                taken = CaptureView(capture_id=capture_id, status="captured", amount=Decimal(data["amount"]),
                                    at=event.at)
            else:
                taken = CaptureView(capture_id=capture_id, status="failed", reason=ReasonCode(**data["reason"]),
                                    at=event.at)
            payment.captures.append(taken)
            payment.captured = sum((c.amount for c in payment.captures if c.amount is not None), Decimal(0))
        case "PaymentRefunded" if all(r.refund_id != data["refund_id"] for r in payment.refunds):
            payment.refunds.append(RefundView(refund_id=data["refund_id"], amount=Decimal(data["amount"]), at=event.at))
            payment.refunded += Decimal(data["amount"])
        case "AuthorizationVoided":  # each void releases what was left then: the last one says what was released
            payment.voided = Decimal(data["amount"])
        case "AuthorizationAdjusted":  # an edit changed what the customer owes: the authorisation follows
            payment.authorised = Decimal(data["amount"])


def _payment_status(payment: PaymentView, total: Decimal | None) -> str:
    if any(c.status == "failed" for c in payment.captures):
        return "capture_failed"
    if payment.refunds:
        return "refunded" if payment.refunded >= payment.captured else "partially_refunded"
    if payment.captured:
        whole = payment.voided is not None or total is None or payment.captured >= total
        return "captured" if whole else "partially_captured"
    if payment.voided is not None:
        return "voided"
    return "authorised" if payment.authorised is not None else "none"


def _apply_return(view: OrderView, event: TimelineEvent) -> None:
    found = next((r for r in view.returns if r.return_id == event.data["return_id"]), None)
    if found is None:  # its approval not seen (yet): nothing to attach it to
        return
    if event.type == "ReturnRefunded":
        found.status, found.refund = "refunded", Decimal(event.data["refund"]["total"])
    elif found.status == "approved":
        found.status = "received"


def _apply_fulfillment(view: OrderView, event: TimelineEvent) -> None:
    data = event.data
    if event.type == "FulfillmentAmended":  # an edit: its parts, each with its lines from now on (none: withdrawn)
        for part in data["parts"]:
            if not part["lines"]:
                _fulfillment_order(view, part).status = "cancelled"
        return
    fulfillment_order = _fulfillment_order(view, data)
    if event.type == "FulfillmentOrderProgressed":
        fulfillment_order.status = data["status"]
    elif event.type == "FulfillmentCancellationRefused":
        return
    elif event.type == "ShipmentConfirmed":
        fulfillment_order.status = "shipped" if data["complete"] else "partially_shipped"
        if all(s.shipment_id != UUID(data["shipment_id"]) for s in view.shipments):
            view.shipments.append(ShipmentView(
                shipment_id=data["shipment_id"], fulfillment_order_id=data["fulfillment_order_id"],
                location_id=data["location_id"], carrier=data["carrier"], tracking_number=data["tracking_number"],
                lines=data["lines"], shipped_at=data["shipped_at"]))
    else:
        fulfillment_order.status = FULFILLMENT_STATUS.get(event.type, fulfillment_order.status)
        if event.type == "FulfillmentRejected":
            fulfillment_order.reason = ReasonCode(**data["reason"])
        if event.type == "DeliveryConfirmed":
            for shipment in view.shipments:
                if shipment.fulfillment_order_id == fulfillment_order.fulfillment_order_id:
                    shipment.delivered_at = shipment.delivered_at or datetime.fromisoformat(data["delivered_at"])


def _fulfillment_order(view: OrderView, data: dict[str, Any]) -> FulfillmentOrderView:
    found = next((f for f in view.fulfillment_orders if f.fulfillment_order_id == UUID(data["fulfillment_order_id"])),
                 None)
    if found is None:
        found = FulfillmentOrderView(fulfillment_order_id=data["fulfillment_order_id"],
                                     location_id=data["location_id"], status="requested")
        view.fulfillment_orders.append(found)
    return found


def _share_out_line_statuses(view: OrderView, cancelled: Counter[str]) -> None:
    """Each line's units shipped and cancelled, shared out over the order's lines of that SKU, and its status (set
    on the lines in place: a copy of each line was a third of what applying an event cost)."""
    shipped: Counter[str] = Counter()
    for shipment in view.shipments:
        shipped.update({line["sku"]: line["quantity"] for line in shipment.lines})
    for line in view.lines:
        line_shipped = min(line.quantity, shipped[line.sku])
        shipped[line.sku] -= line_shipped
        rest = line.quantity - line_shipped
        line_cancelled = rest if view.status == "cancelled" else min(rest, cancelled[line.sku])
        cancelled[line.sku] -= line_cancelled
        line.shipped, line.cancelled = line_shipped, line_cancelled
        line.status = _line_status(view.status, line.quantity, line_shipped, line_cancelled)


def _line_status(order_status: str, quantity: int, shipped: int, cancelled: int) -> str:
    if cancelled == quantity:
        return "cancelled"
    if order_status in ("ready_for_pickup", "picked_up"):
        return order_status
    if shipped + cancelled < quantity:
        return "partially_shipped" if shipped else "open"
    return "delivered" if order_status == "delivered" else "shipped"
