"""Money: what an order charges (per line: unit price, discount, tax; shipping and its tax), its totals, and
what each shipment is worth — the amounts an ERP posts without asking back. `Decimal` throughout, cents rounded
half up. A line's discount and tax are shared among its shipments by `share`, which telescopes: however a
line ships (in one parcel or several, from one location or several), its shares add up to the line's amount
exactly. Shipping (and its tax) goes with the order's first shipment."""

from collections.abc import Mapping
from decimal import ROUND_HALF_UP, Decimal
from typing import Annotated

from pydantic import AfterValidator, Field, WithJsonSchema, model_validator
from pydantic_core import PydanticCustomError
from pydantic_extra_types.currency_code import Currency

from .common import Line, Sku, Value

CENT = Decimal("0.01")
PLAIN_AMOUNT = r"^(0|[1-9][0-9]{0,11})(\.[0-9]{1,2})?$"
LARGEST_AMOUNT = Decimal("999999999999.99")  # what Money holds: 14 digits, 2 after the point


def _plain(amount: Decimal) -> Decimal:
    """As any ERP's parser reads it, in at most two places: a channel's "1e1" is written 10 (not 1E+1), its "-0"
    0, its "1.000" (two places once normalised, so taken) 1.00."""
    text = str(amount)  # the common case told from its text: a third of the time of as_tuple()
    point = text.find(".")
    if "E" not in text and text[0] != "-" and (point < 0 or len(text) - point <= 3):
        return amount
    plain = amount.quantize(CENT) if amount.as_tuple().exponent < -2 else Decimal(format(amount, "f"))
    return plain + 0  # + 0: a negative zero becomes zero


# Documented as the string we write (numbers are taken too); at most 12 digits before the point and 2 after.
Money = Annotated[Decimal, Field(ge=0, max_digits=14, decimal_places=2), AfterValidator(_plain),
                  WithJsonSchema({"type": "string", "pattern": PLAIN_AMOUNT, "examples": ["19.99"]})]


class ChargedLine(Line):
    unit_price: Money
    discount: Money = Field(Decimal(0), description="Off the line (all its units), before tax")
    tax: Money = Field(Decimal(0), description="The line's tax (all its units)")

    @model_validator(mode="after")
    def discount_within_price(self) -> "ChargedLine":
        if self.discount > self.gross:
            raise PydanticCustomError("discount_too_large", "discount {discount} exceeds the line's {gross}",
                                      {"discount": str(self.discount), "gross": str(self.gross)})
        return self

    @property
    def gross(self) -> Decimal:
        return self.unit_price * self.quantity


class OrderTotals(Value):
    goods: Money = Field(description="Sum of unit price x quantity")
    discount: Money
    shipping: Money
    tax: Money = Field(description="Line tax and shipping tax")
    total: Money = Field(description="goods - discount + shipping, + tax unless prices include it")


class Billing(Value):
    """What a fulfilment order needs to price its shipments: the whole order's charges."""

    channel: str
    channel_order_id: str
    currency: Currency
    lines: list[ChargedLine]
    shipping: Money = Decimal(0)
    shipping_tax: Money = Decimal(0)
    prices_include_tax: bool = False


class LineAmount(Value):
    sku: Sku
    quantity: int
    unit_price: Money
    discount: Money
    tax: Money
    net: Money = Field(description="unit price x quantity - discount")


class ShipmentAmounts(Value):
    """What one shipment (or a pickup's goods issue) is worth, as the ERP posts it."""

    channel: str
    channel_order_id: str
    currency: Currency
    lines: list[LineAmount]
    shipping: Money = Field(description="The order's shipping charge: on its first shipment, else 0")
    shipping_tax: Money
    tax: Money = Field(description="Line tax and shipping tax of this shipment")
    total: Money = Field(description="Net of the lines + shipping, + tax unless prices include it")
    prices_include_tax: bool


def order_totals(lines: list[ChargedLine], shipping: Decimal, shipping_tax: Decimal,
                 prices_include_tax: bool) -> OrderTotals:
    return OrderTotals(**order_sums(lines, shipping, shipping_tax, prices_include_tax))


def order_sums(lines: list[ChargedLine], shipping: Decimal, shipping_tax: Decimal,
               prices_include_tax: bool) -> dict[str, Decimal]:
    """The order's totals by name; amount_too_large if one is more than an amount holds."""
    goods = sum((line.gross for line in lines), Decimal(0))
    discount = sum((line.discount for line in lines), Decimal(0))
    tax = sum((line.tax for line in lines), Decimal(0)) + shipping_tax
    total = goods - discount + shipping + (0 if prices_include_tax else tax)
    for name, amount in (("goods", goods), ("tax", tax), ("total", total)):
        if amount > LARGEST_AMOUNT:  # each amount may fit while the order's do not
            raise PydanticCustomError("amount_too_large", "the order's {name} {amount} is more than an amount holds "
                                      "({largest})", {"name": name, "amount": str(amount),
                                                      "largest": str(LARGEST_AMOUNT)})
    return {"goods": goods, "discount": discount, "shipping": shipping, "tax": tax, "total": total}


def share(amount: Decimal, before: int, quantity: int, of: int) -> Decimal:
    """The part of a line's `amount` that `quantity` units carry, `before` of its `of` units having been
    charged already: the cumulative share rounded, minus what was charged, so the parts add up to `amount`."""
    def upto(units: int) -> Decimal:
        return (amount * units / of).quantize(CENT, rounding=ROUND_HALF_UP)

    return upto(before + quantity) - upto(before)


def shipment_amounts(billing: Billing, parcel: list[Line], shipped_before: Mapping[str, int],
                     first: bool) -> ShipmentAmounts:
    """The amounts of a parcel, given how many units of each SKU the order shipped before it (from any of its
    locations) and whether it is the order's first shipment (which carries the shipping charge)."""
    charged = {line.sku: line for line in billing.lines}
    lines = []
    for line in parcel:
        of = charged[line.sku]
        before = shipped_before.get(line.sku, 0)
        discount = share(of.discount, before, line.quantity, of.quantity)
        lines.append(LineAmount(sku=line.sku, quantity=line.quantity, unit_price=of.unit_price, discount=discount,
                                tax=share(of.tax, before, line.quantity, of.quantity),
                                net=of.unit_price * line.quantity - discount))
    shipping, shipping_tax = (billing.shipping, billing.shipping_tax) if first else (Decimal(0), Decimal(0))
    tax = sum((amount.tax for amount in lines), Decimal(0)) + shipping_tax
    total = sum((amount.net for amount in lines), Decimal(0)) + shipping + (0 if billing.prices_include_tax else tax)
    return ShipmentAmounts(channel=billing.channel, channel_order_id=billing.channel_order_id,
                           currency=billing.currency, lines=lines, shipping=shipping, shipping_tax=shipping_tax,
                           tax=tax, total=total, prices_include_tax=billing.prices_include_tax)
