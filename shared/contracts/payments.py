"""Payments: the OMS orchestrates, a payment service executes. The channel reports the authorisation with the
order (`PlaceOrder.payment`); the order saga asks to capture each shipment's amount (`CapturePayment`, once per
shipment: `capture_id` is the shipment id), to void what is left of the authorisation when the order is
cancelled (`VoidAuthorization`) and to refund each received return (`RefundPayment`, once per return); the
payment service answers on its own topic. A failed capture puts the order on hold (`PAYMENT_CAPTURE_FAILED`)."""

from uuid import UUID

from pydantic import Field
from pydantic_extra_types.currency_code import Currency

from .base import Contract, contract
from .common import ReasonCode, Value
from .money import LineAmount, Money
from .topics import PAYMENT_COMMANDS, PAYMENT_EVENTS


class Authorization(Value):
    """What the channel's payment provider authorised for the order."""

    provider: str = Field(min_length=1, max_length=50, examples=["stripe"])
    reference: str = Field(min_length=1, max_length=200, description="The provider's authorisation id")
    amount: Money


@contract("oms.payments.CapturePayment.v1", topic=PAYMENT_COMMANDS)
class CapturePayment(Contract):
    """Capture a shipment's amount against the order's authorisation: once per shipment (`capture_id`); a
    provider paying in instalments learns which lines and quantities it covers."""

    order_id: UUID
    capture_id: UUID = Field(description="The shipment's id: the same capture asked twice is one")
    provider: str
    authorization_reference: str
    amount: Money
    currency: Currency
    lines: list[LineAmount]


@contract("oms.payments.VoidAuthorization.v1", topic=PAYMENT_COMMANDS)
class VoidAuthorization(Contract):
    """The order is cancelled: release what is left of the authorisation."""

    order_id: UUID
    provider: str
    authorization_reference: str
    amount: Money = Field(description="Authorised and not captured")
    currency: Currency


@contract("oms.payments.RefundPayment.v1", topic=PAYMENT_COMMANDS)
class RefundPayment(Contract):
    """Refund a received return: once per return (`refund_id`), with the lines and quantities it covers."""

    order_id: UUID
    refund_id: str = Field(description="The return's id: the same refund asked twice is one")
    provider: str
    authorization_reference: str
    amount: Money
    currency: Currency
    lines: list[LineAmount]


@contract("oms.payments.AdjustAuthorization.v1", topic=PAYMENT_COMMANDS)
class AdjustAuthorization(Contract):
    """An order edit changed what the customer owes: the authorisation becomes `amount` (reduced: the rest
    released; increased: authorised anew for the difference). Once per edit (`adjustment_id`)."""

    order_id: UUID
    adjustment_id: str = Field(description="The edit's id: the same adjustment asked twice is one")
    provider: str
    authorization_reference: str
    amount: Money = Field(description="The authorisation from now on")
    previous_amount: Money
    currency: Currency


@contract("oms.payments.PaymentCaptured.v1", topic=PAYMENT_EVENTS)
class PaymentCaptured(Contract):
    order_id: UUID
    capture_id: UUID
    amount: Money


@contract("oms.payments.PaymentCaptureFailed.v1", topic=PAYMENT_EVENTS)
class PaymentCaptureFailed(Contract):
    order_id: UUID
    capture_id: UUID
    reason: ReasonCode = Field(description="The provider's decline, e.g. AUTHORIZATION_EXPIRED, INSUFFICIENT_FUNDS")


@contract("oms.payments.PaymentRefunded.v1", topic=PAYMENT_EVENTS)
class PaymentRefunded(Contract):
    order_id: UUID
    refund_id: str
    amount: Money


@contract("oms.payments.AuthorizationAdjusted.v1", topic=PAYMENT_EVENTS)
class AuthorizationAdjusted(Contract):
    order_id: UUID
    adjustment_id: str
    amount: Money


@contract("oms.payments.AuthorizationAdjustmentFailed.v1", topic=PAYMENT_EVENTS)
class AuthorizationAdjustmentFailed(Contract):
    order_id: UUID
    adjustment_id: str
    reason: ReasonCode = Field(description="The provider's decline, e.g. INSUFFICIENT_FUNDS")


@contract("oms.payments.AuthorizationVoided.v1", topic=PAYMENT_EVENTS)
class AuthorizationVoided(Contract):
    order_id: UUID
    amount: Money
