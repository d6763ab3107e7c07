"""Reason codes for orders a channel got wrong, derived from the PlaceOrder contract's validation errors."""

from typing import Annotated

from pydantic import TypeAdapter, ValidationError

from shared.contracts import Envelope
from shared.contracts.order_rules import order_id_for, reasons
from shared.contracts.orders import OrderRejected, PlaceOrder

_FIELDS = {name: TypeAdapter(Annotated[str, *PlaceOrder.model_fields[name].metadata])
           for name in ("channel", "channel_order_id")}


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


