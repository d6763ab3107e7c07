"""What an edit asks for, as the order it would leave: EditOrder gives the new lines, delivery or shipping;
CancelOrderLines takes units off (a line that keeps some units keeps that share of its discount and tax)."""

from pydantic_core import PydanticCustomError

from shared.contracts.common import Line, ReasonCode
from shared.contracts.money import order_sums, share
from shared.contracts.order_rules import reason_code
from shared.contracts.orders import CancelOrderLines, EditOrder, PlaceOrder


def edited_order(placed: dict, cmd: EditOrder | CancelOrderLines) -> dict | ReasonCode:
    """The order (as stored) after the edit, or why it cannot be: NOT_ON_ORDER (cancelling units the order
    does not have), INVALID_AMOUNT (its totals more than an amount holds). The channel's own totals no longer
    apply."""
    if isinstance(cmd, CancelOrderLines):
        return without_lines(placed, cmd.lines)
    changes = {key: value for key, value in (("lines", cmd.lines), ("delivery", cmd.delivery),
                                              ("shipping", cmd.shipping), ("shipping_tax", cmd.shipping_tax))
               if value is not None}
    return _changed(PlaceOrder.model_validate(placed), changes)


def without_lines(placed: dict, cancelled: list[Line]) -> dict | ReasonCode:
    """The order (as stored) without these units: a customer's cancellation, or lines the OMS could not fill."""
    order = PlaceOrder.model_validate(placed)
    lines = _without(order, cancelled)
    return lines if isinstance(lines, ReasonCode) else _changed(order, {"lines": lines})


def _changed(order: PlaceOrder, changes: dict) -> dict | ReasonCode:
    changed = order.model_copy(update={**changes, "totals": None})
    try:
        order_sums(changed.lines, changed.shipping, changed.shipping_tax, changed.prices_include_tax)
    except PydanticCustomError as error:  # new lines each within an amount, the order's totals not
        return ReasonCode(code=reason_code((), error.type), detail=str(error))
    return changed.model_dump(mode="json")


def _without(order: PlaceOrder, units: list[Line]) -> list | ReasonCode:
    cancelled = {line.sku: line.quantity for line in units}
    ordered = {line.sku: line.quantity for line in order.lines}
    beyond = sorted(sku for sku, quantity in cancelled.items() if quantity > ordered.get(sku, 0))
    if beyond:
        return ReasonCode(code="NOT_ON_ORDER", detail=f"more than ordered of {', '.join(beyond)}")
    lines = []
    for line in order.lines:
        kept = line.quantity - cancelled.get(line.sku, 0)
        if kept:
            lines.append(line.model_copy(update={
                "quantity": kept, "discount": share(line.discount, 0, kept, line.quantity),
                "tax": share(line.tax, 0, kept, line.quantity)}))
    return lines
