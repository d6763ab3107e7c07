"""Pure rules of customer messages: which message an event makes, the ids that make each delivery happen once,
and the retry schedule (a reason code in words: shared/cancel_reasons.py)."""

import uuid
from dataclasses import dataclass

from shared.cancel_reasons import cancel_reason
from shared.contracts import Contract
from shared.contracts.common import Line
from shared.contracts.orders import (
    OrderBackordered,
    OrderCancelled,
    OrderConfirmed,
    OrderDelivered,
    OrderEdited,
    OrderLinesCancelled,
    ReturnApproved,
    ReturnRefunded,
    OrderPickedUp,
    OrderReadyForPickup,
    OrderShipped,
)


@dataclass(frozen=True)
class MessageFacts:
    """What a lifecycle event tells the customer: its kind, what tells two of a kind for one order apart (each
    parcel of a partial shipment), and the values its templates use."""

    kind: str
    reference: str
    values: dict[str, object]


def facts(event: Contract) -> MessageFacts:
    match event:
        case OrderConfirmed():
            return MessageFacts("order_confirmed", "", {})
        case OrderBackordered():
            return MessageFacts("order_backordered", "", {"lines": _lines(event.short),
                                                          "expected_on": event.expected_on})
        case OrderShipped():
            return MessageFacts("order_shipped", str(event.shipment_id or ""), {
                "carrier": event.carrier, "tracking_number": event.tracking_number, "lines": _lines(event.lines),
                "complete": event.complete})
        case OrderLinesCancelled():
            return MessageFacts("order_lines_cancelled", "", {"lines": _lines(event.lines)})
        case OrderEdited():
            return MessageFacts("order_edited", event.edit_id, {
                "lines": _lines(event.lines), "added": _lines(event.added), "removed": _lines(event.removed),
                "rerouted": event.rerouted, "total": str(event.totals.total), "currency": event.currency,
                "amount_due": str(event.amount_due)})
        case OrderDelivered():
            return MessageFacts("order_delivered", "", {})
        case OrderReadyForPickup():
            return MessageFacts("order_ready_for_pickup", "", {"store_id": event.store_id})
        case OrderPickedUp():
            return MessageFacts("order_picked_up", "", {"store_id": event.store_id})
        case ReturnApproved():
            return MessageFacts("return_approved", event.return_id, {
                "return_id": event.return_id, "return_to": event.return_to, "lines": _lines(event.lines)})
        case ReturnRefunded():
            return MessageFacts("return_refunded", event.return_id, {
                "return_id": event.return_id, "lines": _lines(event.restocked + event.disposed),
                "amount": str(event.refund.total), "currency": event.refund.currency})
        case OrderCancelled():
            return MessageFacts("order_cancelled", "", {"reason_code": event.reason.code,
                                                        "reason": cancel_reason(event.reason.code)})
    raise TypeError(f"no notification for {event.message_type}")


def _lines(lines: list[Line]) -> list[dict[str, object]]:
    return [{"sku": line.sku, "quantity": line.quantity} for line in lines]


def notification_id(order_id: uuid.UUID, kind: str, reference: str = "") -> uuid.UUID:
    """One customer message per (order, kind, reference): a repeated event makes the same id."""
    return uuid.uuid5(order_id, f"{kind}:{reference}" if reference else kind)


def delivery_id(notification: uuid.UUID, channel: str) -> uuid.UUID:
    """One delivery per message and channel; the receiver sees it as the Message-ID or the webhook-id."""
    return uuid.uuid5(notification, channel)


def webhook_event_type(kind: str) -> str:
    """Standard Webhooks' `type`: `order.shipped` for kind `order_shipped`."""
    return kind.replace("_", ".", 1)


def retry_delay(attempt: int, first: float, cap: float) -> float:
    """Seconds to wait after failed attempt number `attempt` (1, 2, ...): first, doubling, at most cap."""
    return min(first * 2 ** (attempt - 1), cap)


def gives_up(attempts: int, max_attempts: int) -> bool:
    return attempts >= max_attempts
