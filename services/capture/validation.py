"""Reason codes for orders a channel got wrong, derived from the PlaceOrder contract's validation errors."""

from typing import Annotated

from pydantic import TypeAdapter, ValidationError

from shared.contracts import Envelope
from shared.contracts.order_rules import order_id_for, reasons
from shared.contracts.orders import CancelOrderLines, EditOrder, OrderEditRefused, OrderRejected, PlaceOrder

_FIELDS = {name: TypeAdapter(Annotated[str, *PlaceOrder.model_fields[name].metadata])
           for name in ("channel", "channel_order_id")}
_FIELDS["edit_id"] = TypeAdapter(Annotated[str, *EditOrder.model_fields["edit_id"].metadata])
EDITS = {EditOrder.message_type, CancelOrderLines.message_type}


def rejection(envelope: Envelope, error: ValidationError) -> list[OrderRejected | OrderEditRefused]:
    """Answer the channel when the order (and an edit, its edit id) is identifiable by well-formed ids, which
    is all we echo; otherwise only the dead letter remains."""
    channel, channel_order_id = envelope.data.get("channel"), envelope.data.get("channel_order_id")
    if not (_well_formed("channel", channel) and _well_formed("channel_order_id", channel_order_id)):
        return []
    order_id = order_id_for(channel, channel_order_id)
    if envelope.type == PlaceOrder.message_type:
        return [OrderRejected(order_id=order_id, channel=channel, channel_order_id=channel_order_id,
                              reasons=reasons(error))]
    edit_id = envelope.data.get("edit_id")
    if envelope.type in EDITS and _well_formed("edit_id", edit_id):
        return [OrderEditRefused(order_id=order_id, channel=channel, channel_order_id=channel_order_id,
                                 edit_id=edit_id, reason=reasons(error)[0])]
    return []


def _well_formed(field: str, value: object) -> bool:
    try:
        _FIELDS[field].validate_python(value, strict=True)
        return True
    except ValidationError:
        return False


