"""Rules about a channel's order that every intake path shares (Kafka through capture, HTTP through tracking):
the order id a channel order gets, and the reason codes of an invalid one."""

import uuid

from pydantic import ValidationError

from .base import printable
from .common import ReasonCode
from .money import OrderTotals
from .orders import PlaceOrder

ORDER_NAMESPACE = uuid.UUID("0b6f0c1e-8f0a-4c53-9a57-3f0c1b1f7d10")


def order_id_for(channel: str, channel_order_id: str) -> uuid.UUID:
    """Deterministic, so every retry of a channel order maps to the same order id."""
    return uuid.uuid5(ORDER_NAMESPACE, f"{channel}/{channel_order_id}")


def reason_code(loc: tuple[str | int, ...], error_type: str) -> str:
    path = [str(p) for p in loc]
    head = path[0] if path else ""
    errors = {"duplicate_sku": "DUPLICATE_SKU", "discount_too_large": "INVALID_DISCOUNT",
              "amount_too_large": "INVALID_AMOUNT"}
    if error_type in errors:
        return errors[error_type]
    if head == "lines":
        if len(path) == 1:
            return "NO_LINES"
        for field, code in (("quantity", "INVALID_QUANTITY"), ("sku", "INVALID_SKU"), ("unit_price", "INVALID_PRICE"),
                            ("discount", "INVALID_DISCOUNT"), ("tax", "INVALID_AMOUNT")):
            if field in path:
                return code
        return "INVALID_LINE"
    codes = {"currency": "UNKNOWN_CURRENCY", "delivery": "INVALID_DELIVERY", "customer": "INVALID_CUSTOMER",
             "channel": "INVALID_CHANNEL", "channel_order_id": "INVALID_CHANNEL_ORDER_ID",
             "shipping": "INVALID_AMOUNT", "shipping_tax": "INVALID_AMOUNT", "totals": "INVALID_TOTALS"}
    if error_type == "missing" and head == "delivery":
        return "MISSING_DELIVERY"
    return codes.get(head, "MALFORMED_ORDER")


def reasons(error: ValidationError) -> list[ReasonCode]:
    seen: dict[str, ReasonCode] = {}
    for e in error.errors():
        code = reason_code(e["loc"], e["type"])
        where = printable(".".join(map(str, e["loc"])), 100)  # a location can name a key the sender made up
        seen.setdefault(code, ReasonCode(code=code, detail=f"{where}: {e['msg']}" if where else e["msg"]))
    return list(seen.values())


def totals_mismatch(order: PlaceOrder) -> ReasonCode | None:
    """TOTALS_MISMATCH when the channel's own totals differ from ours: the channel would charge the customer one
    amount and the ERP post another."""
    ours = order.computed_totals()
    if order.totals is None or order.totals == ours:
        return None
    differ = [f"{field} {getattr(order.totals, field)} (ours {getattr(ours, field)})"
              for field in OrderTotals.model_fields if getattr(order.totals, field) != getattr(ours, field)]
    return ReasonCode(code="TOTALS_MISMATCH", detail=", ".join(differ))
