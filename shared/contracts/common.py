"""Value types shared by several domains."""

from collections import Counter
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

Sku = Annotated[str, StringConstraints(pattern=r"^[A-Z0-9][A-Z0-9-]{1,39}$")]
LocationId = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$")]
LocationKind = Literal["warehouse", "store", "dropship"]

# ISO 4217 codes the OMS accepts; a channel sending another currency gets UNKNOWN_CURRENCY.
CURRENCIES = frozenset({"EUR", "USD", "GBP", "CHF", "SEK", "NOK", "DKK", "PLN", "CZK", "CAD", "AUD", "JPY"})


class Value(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


class Line(Value):
    sku: Sku = Field(description="Stock keeping unit: upper-case letters, digits and dashes", examples=["SKU-RED-42"])
    quantity: int = Field(gt=0, le=10_000, description="Units ordered, a positive integer")


class Coordinates(Value):
    lat: float = Field(ge=-90, le=90)
    lon: float = Field(ge=-180, le=180)


class Address(Value):
    name: str = Field(min_length=1, max_length=200)
    line1: str = Field(min_length=1, max_length=200)
    city: str = Field(min_length=1, max_length=100)
    postal_code: str = Field(min_length=1, max_length=20)
    country: str = Field(pattern=r"^[A-Z]{2}$", description="ISO 3166-1 alpha-2")
    coordinates: Coordinates | None = Field(None, description="Without them, routing goes by country and postal-code "
                                                              "zones")


def _tag_required(schema: dict[str, Any]) -> None:
    """A delivery's `type` is defaulted for our own code, but a message must carry it: it is the tag the union is
    told apart by (and an OpenAPI discriminator's property is required)."""
    schema["required"] = ["type", *schema.get("required", [])]


class ShipTo(Value):
    model_config = ConfigDict(json_schema_extra=_tag_required)

    type: Literal["ship"] = "ship"
    address: Address


class PickupInStore(Value):
    """BOPIS: the customer collects the order at this store."""

    model_config = ConfigDict(json_schema_extra=_tag_required)

    type: Literal["pickup"] = "pickup"
    store_id: LocationId


Delivery = Annotated[ShipTo | PickupInStore, Field(discriminator="type")]


class ReasonCode(Value):
    code: str = Field(examples=["OUT_OF_STOCK"])
    detail: str = ""


class Assignment(Value):
    """The lines one location fulfils."""

    location_id: LocationId
    lines: list[Line]
    location_kind: LocationKind | None = Field(None, description="What the location is, as routing knows it "
                                                                 "(absent from senders that predate it)")


def merge_lines(lines: list[Line]) -> list[Line]:
    """One line per SKU, sorted by SKU."""
    return _lines_of(_units(lines))


def subtract_lines(lines: list[Line], taken: list[Line]) -> list[Line] | None:
    """What is left of `lines` once `taken` is out, or None if `taken` holds more of a SKU than `lines` does."""
    left = _units(lines)
    for sku, quantity in _units(taken).items():
        if left[sku] < quantity:
            return None
        left[sku] -= quantity
    return _lines_of(left)


def _units(lines: list[Line]) -> Counter[str]:
    """Units per SKU (counted, not built as lines: inventory merges and subtracts lines on every command)."""
    units: Counter[str] = Counter()
    for line in lines:
        units[line.sku] += line.quantity
    return units


def _lines_of(units: Counter[str]) -> list[Line]:
    return [Line(sku=sku, quantity=quantity) for sku, quantity in sorted(units.items()) if quantity]
