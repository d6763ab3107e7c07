"""Order capture: what sales channels send, and the order lifecycle events they (and others) read."""

from datetime import date, datetime
from typing import Literal
from decimal import Decimal
from uuid import UUID

from pydantic import EmailStr, Field, field_validator, model_validator
from pydantic_core import PydanticCustomError
from pydantic_extra_types.currency_code import Currency

from .base import NO_CONTROL_CHARACTERS, Contract, contract
from .common import Delivery, Line, ReasonCode, Value
from .money import Billing, ChargedLine, Money, OrderTotals, ShipmentAmounts, order_sums, order_totals
from .payments import Authorization
from .topics import ORDER_COMMANDS, ORDER_EVENTS, ORDER_PURGES


class CustomerOnRecord(Value):
    """A customer as the OMS passes it on in an order's events: the address was checked and normalised when the
    order was placed (`Customer`)."""

    customer_id: str = Field(min_length=1, max_length=100)
    # Not checked again by every reader of every OrderAccepted: email-validator costs 25 µs an address in a tight
    # loop and several times that in a busy service (3-8 % of tracking's and notification's CPU at saturation).
    email: str = Field(min_length=3, max_length=254, pattern=NO_CONTROL_CHARACTERS,
                       json_schema_extra={"format": "email"})
    name: str = Field(min_length=1, max_length=200)


class Customer(CustomerOnRecord):
    """A customer as a sales channel sends it: the address checked (email-validator) and normalised."""

    email: EmailStr


def one_line_per_sku(lines: list[Line] | None) -> list[Line] | None:
    skus = [line.sku for line in lines or []]
    if len(set(skus)) < len(skus):
        twice = sorted({sku for sku in skus if skus.count(sku) > 1})
        raise PydanticCustomError("duplicate_sku", "SKUs on more than one line: {skus}", {"skus": twice})
    return lines


class PricedLine(ChargedLine):
    allow_backorder: bool = Field(False, description="This SKU may be waited for (a backorder or preorder)")


@contract("oms.capture.PlaceOrder.v1", topic=ORDER_COMMANDS)
class PlaceOrder(Contract):
    """A sales channel asks the OMS to take an order. Retries with the same (channel, channel_order_id) are the
    same order."""

    channel: str = Field(pattern=r"^[a-z0-9][a-z0-9_-]{0,31}$", examples=["web"])
    channel_order_id: str = Field(min_length=1, max_length=100, pattern=NO_CONTROL_CHARACTERS, examples=["W-10001"])
    customer: Customer
    currency: Currency = Field(description="ISO 4217 (pycountry's list, without funds, metals and test codes)",
                               examples=["EUR"])
    lines: list[PricedLine] = Field(min_length=1, max_length=200, description="One line per SKU")
    delivery: Delivery
    allow_backorder: bool = Field(False, description="The order may wait for any SKU that is short, instead of "
                                                     "being cancelled (OrderBackordered), served in arrival order")
    shipping: Money = Field(Decimal(0), description="Shipping charge")
    shipping_tax: Money = Field(Decimal(0), description="Tax on the shipping charge")
    prices_include_tax: bool = Field(False, description="Unit prices and shipping include their tax (which is "
                                                        "then not added to the total)")
    totals: OrderTotals | None = Field(None, description="The channel's own totals: checked against ours, "
                                                         "rejected TOTALS_MISMATCH if they differ")
    payment: Authorization | None = Field(None, description="The payment authorisation: each shipment is "
                                                            "captured against it, what is left voided on cancel")
    exchange_for: str | None = Field(None, max_length=200, description="An exchange's replacement order: "
                                                                       "`<order id>/<return id>` it replaces goods of "
                                                                       "(paid by them: no capture of its own)")

    def backorder_skus(self) -> list[str]:
        """The SKUs this order may wait for."""
        return sorted({line.sku for line in self.lines if self.allow_backorder or line.allow_backorder})

    @field_validator("lines")
    @classmethod
    def one_line_per_sku(cls, lines: list[PricedLine]) -> list[PricedLine]:
        return one_line_per_sku(lines)

    @model_validator(mode="after")
    def totals_within_an_amount(self) -> "PlaceOrder":
        order_sums(self.lines, self.shipping, self.shipping_tax, self.prices_include_tax)
        return self

    def computed_totals(self) -> OrderTotals:
        return order_totals(list(self.lines), self.shipping, self.shipping_tax, self.prices_include_tax)

    def billing(self) -> Billing:
        return Billing(channel=self.channel, channel_order_id=self.channel_order_id, currency=self.currency,
                       lines=[ChargedLine(sku=line.sku, quantity=line.quantity, unit_price=line.unit_price,
                                          discount=line.discount, tax=line.tax) for line in self.lines],
                       shipping=self.shipping, shipping_tax=self.shipping_tax,
                       prices_include_tax=self.prices_include_tax)

    def key(self) -> str:
        return f"{self.channel}/{self.channel_order_id}"


@contract("oms.capture.CancelOrder.v1", topic=ORDER_COMMANDS)
class CancelOrder(Contract):
    """The channel (for the customer) asks to cancel an order. Honoured at any point before shipment."""

    channel: str = Field(pattern=r"^[a-z0-9][a-z0-9_-]{0,31}$")
    channel_order_id: str = Field(min_length=1, max_length=100, pattern=NO_CONTROL_CHARACTERS)
    reason: str = Field("customer request", max_length=200)

    def key(self) -> str:
        return f"{self.channel}/{self.channel_order_id}"


HoldReason = Literal["payment_review", "fraud_review", "address_check", "manual", "payment_capture_failed"]


class Hold(Value):
    reason: HoldReason
    placed_by: str = Field(min_length=1, max_length=100, description="Who or what placed it (a person, a rule)")
    note: str = Field("", max_length=500)
    expires_at: datetime | None = Field(None, description="The hold lapses then (released by `expiry`)")


@contract("oms.capture.HoldOrder.v1", topic=ORDER_COMMANDS)
class HoldOrder(Contract):
    """Keep an order from fulfilment: reserved, but not released to any location until every hold is released
    (what a location already has goes on)."""

    channel: str = Field(pattern=r"^[a-z0-9][a-z0-9_-]{0,31}$")
    channel_order_id: str = Field(min_length=1, max_length=100, pattern=NO_CONTROL_CHARACTERS)
    hold: Hold

    def key(self) -> str:
        return f"{self.channel}/{self.channel_order_id}"


@contract("oms.capture.ReleaseHold.v1", topic=ORDER_COMMANDS)
class ReleaseHold(Contract):
    channel: str = Field(pattern=r"^[a-z0-9][a-z0-9_-]{0,31}$")
    channel_order_id: str = Field(min_length=1, max_length=100, pattern=NO_CONTROL_CHARACTERS)
    reason: HoldReason = Field(description="Which hold")
    released_by: str = Field(min_length=1, max_length=100)

    def key(self) -> str:
        return f"{self.channel}/{self.channel_order_id}"


@contract("oms.capture.EditOrder.v1", topic=ORDER_COMMANDS)
class EditOrder(Contract):
    """Change an order before it is picked: its lines (quantities, lines added or removed: `lines` is the order's
    whole new set of lines), its delivery (address, or pickup store), or both. Applied all together or refused
    (OrderEditRefused); the same `edit_id` asked again gets the same answer."""

    channel: str = Field(pattern=r"^[a-z0-9][a-z0-9_-]{0,31}$")
    channel_order_id: str = Field(min_length=1, max_length=100, pattern=NO_CONTROL_CHARACTERS)
    edit_id: str = Field(min_length=1, max_length=100, pattern=NO_CONTROL_CHARACTERS,
                         description="The channel's id of this change: its idempotency key")
    lines: list[PricedLine] | None = Field(None, min_length=1, max_length=200, description="The new lines, "
                                           "one per SKU (omitted: unchanged; to remove everything, cancel)")
    delivery: Delivery | None = Field(None, description="The new delivery (omitted: unchanged)")
    shipping: Money | None = Field(None, description="The new shipping charge (omitted: unchanged)")
    shipping_tax: Money | None = None

    _one_line_per_sku = field_validator("lines")(classmethod(lambda cls, lines: one_line_per_sku(lines)))

    def key(self) -> str:
        return f"{self.channel}/{self.channel_order_id}"


@contract("oms.capture.CancelOrderLines.v1", topic=ORDER_COMMANDS)
class CancelOrderLines(Contract):
    """Cancel some units of an order (whole lines, or part of their quantity) before they are picked: the rest
    goes on, the payment authorisation is reduced. Answered like an edit (OrderEdited, OrderEditRefused)."""

    channel: str = Field(pattern=r"^[a-z0-9][a-z0-9_-]{0,31}$")
    channel_order_id: str = Field(min_length=1, max_length=100, pattern=NO_CONTROL_CHARACTERS)
    edit_id: str = Field(min_length=1, max_length=100, pattern=NO_CONTROL_CHARACTERS)
    lines: list[Line] = Field(min_length=1, max_length=200, description="The units to cancel, per SKU")
    reason: str = Field("customer request", max_length=200)

    _one_line_per_sku = field_validator("lines")(classmethod(lambda cls, lines: one_line_per_sku(lines)))

    def key(self) -> str:
        return f"{self.channel}/{self.channel_order_id}"


@contract("oms.capture.OrderEdited.v1", topic=ORDER_EVENTS)
class OrderEdited(Contract):
    """An edit (or a line cancellation) is applied: the order as it now stands, what changed, and what the
    customer now owes. Units removed are released where they were; units added are reserved; a new address is
    routed anew."""

    order_id: UUID
    channel: str
    channel_order_id: str
    edit_id: str
    lines: list[PricedLine] = Field(description="The order's lines now")
    currency: Currency
    delivery: Delivery
    added: list[Line] = Field(default_factory=list)
    removed: list[Line] = Field(default_factory=list)
    rerouted: bool = Field(False, description="The delivery changed: the order's open fulfilment orders were "
                                              "withdrawn and the order routed anew")
    totals: OrderTotals
    captured: Money = Field(Decimal(0), description="Already captured (paid) before this edit")
    amount_due: Money = Field(description="The new total minus what was already captured")


@contract("oms.capture.OrderEditRefused.v1", topic=ORDER_EVENTS)
class OrderEditRefused(Contract):
    """An edit that was not applied (nothing of it): UNKNOWN_ORDER, ORDER_PURGED, ALREADY_CANCELLED, ALREADY_SHIPPED,
    ALREADY_PICKED, ORDER_BUSY (a step is under way: ask again shortly), OUT_OF_STOCK, EDIT_EXISTS (this edit id
    was used for another change), NOTHING_TO_CANCEL."""

    order_id: UUID
    channel: str
    channel_order_id: str
    edit_id: str
    reason: ReasonCode


@contract("oms.capture.OrderHeld.v1", topic=ORDER_EVENTS)
class OrderHeld(Contract):
    order_id: UUID
    hold: Hold


@contract("oms.capture.OrderHoldReleased.v1", topic=ORDER_EVENTS)
class OrderHoldReleased(Contract):
    order_id: UUID
    reason: HoldReason
    released_by: str = Field(description="Who released it, or `expiry`")


@contract("oms.capture.OrderHoldRefused.v1", topic=ORDER_EVENTS)
class OrderHoldRefused(Contract):
    """A HoldOrder or ReleaseHold that could not be applied (UNKNOWN_ORDER, ORDER_PURGED, ALREADY_SHIPPED,
    ALREADY_CANCELLED, NOT_HELD)."""

    order_id: UUID
    channel: str
    channel_order_id: str
    reason: ReasonCode


class ReturnRequestLine(Line):
    reason: str = Field(min_length=1, max_length=100, examples=["TOO_SMALL", "DAMAGED", "CHANGED_MIND"])


@contract("oms.capture.RequestReturn.v1", topic=ORDER_COMMANDS)
class RequestReturn(Contract):
    """The customer (through the channel) wants to send shipped units back: a return (RMA) of the channel's id."""

    channel: str = Field(pattern=r"^[a-z0-9][a-z0-9_-]{0,31}$")
    channel_order_id: str = Field(min_length=1, max_length=100, pattern=NO_CONTROL_CHARACTERS)
    return_id: str = Field(min_length=1, max_length=100, pattern=NO_CONTROL_CHARACTERS)
    lines: list[ReturnRequestLine] = Field(min_length=1, max_length=200)
    exchange: list[PricedLine] = Field(default_factory=list, max_length=200,
                                       description="An exchange: the replacement, a new order reserved at once and "
                                                   "shipped to the same address; only the price difference is "
                                                   "charged or refunded when the return arrives")

    def key(self) -> str:
        return f"{self.channel}/{self.channel_order_id}"


@contract("oms.capture.ReturnApproved.v1", topic=ORDER_EVENTS)
class ReturnApproved(Contract):
    order_id: UUID
    return_id: str
    lines: list[ReturnRequestLine]
    return_to: str = Field(description="The location to send the goods to")
    exchange_order_id: UUID | None = Field(None, description="The replacement order of an exchange")


@contract("oms.capture.ReturnRefused.v1", topic=ORDER_EVENTS)
class ReturnRefused(Contract):
    """UNKNOWN_ORDER, ORDER_PURGED (closed longer than the order retention ago and forgotten), NOTHING_TO_RETURN
    (more than shipped and not yet returned), OUTSIDE_RETURN_WINDOW, RETURN_EXISTS (the return id was used for other
    lines)."""

    order_id: UUID
    channel: str
    channel_order_id: str
    return_id: str
    reason: ReasonCode


@contract("oms.capture.ReturnRefunded.v1", topic=ORDER_EVENTS)
class ReturnRefunded(Contract):
    """A return arrived: what goes back into stock, what is written off, and the refund — once per return. The
    ERP posts it as it is (amounts per line: price, discount and tax shares)."""

    order_id: UUID
    return_id: str
    location_id: str
    restocked: list[Line]
    disposed: list[Line]
    refund: ShipmentAmounts = Field(description="What the returned units are worth")
    exchange_order_id: UUID | None = None
    price_difference: Decimal = Field(Decimal(0), description="An exchange: the replacement's total minus the "
                                                              "returned units' worth; above 0 charged, below 0 "
                                                              "refunded (only the difference moves)")


@contract("oms.capture.OrderAccepted.v1", topic=ORDER_EVENTS)
class OrderAccepted(Contract):
    order_id: UUID
    channel: str
    channel_order_id: str
    customer: CustomerOnRecord
    lines: list[PricedLine]
    currency: Currency
    delivery: Delivery
    shipping: Money = Decimal(0)
    shipping_tax: Money = Decimal(0)
    prices_include_tax: bool = False
    totals: OrderTotals | None = Field(None, description="As computed by the OMS (goods, discount, shipping, tax, "
                                                         "total)")
    payment: Authorization | None = Field(None, description="The channel's payment authorisation "
                                                            "(PlaceOrder.payment)")


@contract("oms.capture.OrderRejected.v1", topic=ORDER_EVENTS)
class OrderRejected(Contract):
    """The channel's order failed validation, or is one capture has purged (ORDER_PURGED) or too old to tell
    (ORDER_TOO_OLD); nothing was created. Reasons carry machine-readable codes."""

    order_id: UUID | None = None
    channel: str
    channel_order_id: str
    reasons: list[ReasonCode]

    def key(self) -> str:
        return f"{self.channel}/{self.channel_order_id}"


@contract("oms.capture.OrderConfirmed.v1", topic=ORDER_EVENTS)
class OrderConfirmed(Contract):
    """Stock is reserved and a location has taken on a fulfilment order: one such event per fulfilment order (a
    split shipment has several; a part re-sourced after a rejection, another)."""

    order_id: UUID
    location_id: str
    fulfillment_order_id: UUID
    lines: list[Line] = Field(default_factory=list, description="What this fulfilment order serves")


@contract("oms.capture.OrderShipped.v1", topic=ORDER_EVENTS)
class OrderShipped(Contract):
    """A shipment left for the customer: the whole order, or (a partial shipment) some of it."""

    order_id: UUID
    fulfillment_order_id: UUID
    carrier: str
    tracking_number: str
    shipment_id: UUID | None = None
    lines: list[Line] = Field(default_factory=list)
    complete: bool = Field(True, description="Everything of the order that will ship has shipped (every "
                                             "fulfilment order of a split)")


@contract("oms.capture.OrderLinesCancelled.v1", topic=ORDER_EVENTS)
class OrderLinesCancelled(Contract):
    """Part of an order is cancelled (the location shipped the rest and could not fill these): they leave the
    order (its totals shrink; the authorisation follows), the customer is told."""

    order_id: UUID
    lines: list[Line]
    reason: ReasonCode
    totals: OrderTotals | None = Field(None, description="The order's totals without them (absent from senders "
                                                         "that predate it)")
    amount_due: Money | None = Field(None, description="The new total minus what was already captured")


@contract("oms.capture.OrderBackordered.v1", topic=ORDER_EVENTS)
class OrderBackordered(Contract):
    """The order waits for stock (the channel allowed it): it is served as stock arrives, orders waiting longer
    first; `expected_on` when announced receipts cover it."""

    order_id: UUID
    short: list[Line] = Field(description="What is missing now")
    expected_on: date | None = None


@contract("oms.capture.OrderProgressed.v1", topic=ORDER_EVENTS)
class OrderProgressed(Contract):
    """A location picked or packed one of the order's fulfilment orders: for the channel to show."""

    order_id: UUID
    fulfillment_order_id: UUID
    location_id: str
    status: Literal["picked", "packed"]


@contract("oms.capture.OrderReadyForPickup.v1", topic=ORDER_EVENTS)
class OrderReadyForPickup(Contract):
    """The goods wait for the customer at the store."""

    order_id: UUID
    fulfillment_order_id: UUID
    store_id: str


@contract("oms.capture.OrderPickedUp.v1", topic=ORDER_EVENTS)
class OrderPickedUp(Contract):
    """The customer collected the order in store: it is complete."""

    order_id: UUID
    fulfillment_order_id: UUID
    store_id: str


@contract("oms.capture.OrderDelivered.v1", topic=ORDER_EVENTS)
class OrderDelivered(Contract):
    order_id: UUID
    fulfillment_order_id: UUID


@contract("oms.capture.OrderPurged.v1", topic=ORDER_PURGES)
class OrderPurged(Contract):
    """The order was closed (delivered, collected, shipped or cancelled, no return open) for longer than the
    retention: capture has deleted its records of it, and every service deletes its own on reading this. What the
    ERP was told about the order stays the ERP's."""

    order_id: UUID
    closed_as: Literal["delivered", "picked_up", "shipped", "cancelled"] = Field(
        description="The state it was closed in")
    closed_at: datetime


@contract("oms.capture.OrderCancelled.v1", topic=ORDER_EVENTS)
class OrderCancelled(Contract):
    """The order ended without shipping; every reservation and open fulfilment order has been (or is being) undone."""

    order_id: UUID
    reason: ReasonCode = Field(description="CUSTOMER_CANCELLED, OUT_OF_STOCK, UNKNOWN_SKU, NO_LOCATION_WITH_STOCK, "
                                           "PICKUP_STORE_NO_STOCK, PICKUP_REJECTED, NOT_COLLECTED, NO_ROUTE, "
                                           "STEP_TIMEOUT, ...")
    stage: str = Field(description="The saga step the order was at when cancelling began", examples=["routing"])


@contract("oms.capture.OrderCancellationRejected.v1", topic=ORDER_EVENTS)
class OrderCancellationRejected(Contract):
    """A CancelOrder that could not be honoured, with the reason (ALREADY_SHIPPED, ALREADY_CANCELLED, UNKNOWN_ORDER,
    ORDER_PURGED)."""

    order_id: UUID
    channel: str
    channel_order_id: str
    reason: ReasonCode
