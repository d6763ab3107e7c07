"""Reason codes for orders a channel got wrong, derived from the PlaceOrder contract's validation errors."""

import uuid
from typing import Annotated

from pydantic import TypeAdapter, ValidationError

from shared.contracts import Envelope
from shared.contracts.base import printable
from shared.contracts.common import ReasonCode
from shared.contracts.orders import OrderRejected, PlaceOrder

_FIELDS = {name: TypeAdapter(Annotated[str, *PlaceOrder.model_fields[name].metadata])
           for name in ("channel", "channel_order_id")}

ORDER_NAMESPACE = uuid.UUID("0b6f0c1e-8f0a-4c53-9a57-3f0c1b1f7d10")


def order_id_for(channel: str, channel_order_id: str) -> uuid.UUID:
    """Deterministic, so every retry of a channel order maps to the same order id."""
    return uuid.uuid5(ORDER_NAMESPACE, f"{channel}/{channel_order_id}")


def reason_code(loc: tuple[str | int, ...], error_type: str) -> str:
    path = [str(p) for p in loc]
    head = path[0] if path else ""
    if error_type in ("duplicate_sku", "discount_too_large"):
        return {"duplicate_sku": "DUPLICATE_SKU", "discount_too_large": "INVALID_DISCOUNT"}[error_type]
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
        seen.setdefault(code, ReasonCode(code=code, detail=f"{where}: {e['msg']}"))
    return list(seen.values())


def rejection(envelope: Envelope, error: ValidationError) -> list[OrderRejected]:
    """Answer the channel when the order is identifiable by a well-formed (channel, channel order id), which
    is all we echo; otherwise only the dead letter remains."""
    if envelope.type != PlaceOrder.message_type:
        return []
    channel, channel_order_id = envelope.data.get("channel"), envelope.data.get("channel_order_id")
    if not (_well_formed("channel", channel) and _well_formed("channel_order_id", channel_order_id)):
        return []
    return [OrderRejected(order_id=order_id_for(channel, channel_order_id), channel=channel,
                          channel_order_id=channel_order_id, reasons=reasons(error))]


def _well_formed(field: str, value: object) -> bool:
    try:
        _FIELDS[field].validate_python(value, strict=True)
        return True
    except ValidationError:
        return False


