"""The routing rule set: configuration, not code. A TOML file (`OMS_ROUTING_RULES`, default `rules.toml` beside
this module) validated into a versioned model at start-up; an invalid file stops the service with the reason."""

import tomllib
from decimal import Decimal
from functools import cache
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

DEFAULT_RULES = Path(__file__).parent / "rules.toml"
DEFAULT_SKU_CLASS = "standard"


class Rules(BaseModel):
    # A weight or priority of inf or nan (TOML has both) would score locations as no message can carry.
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


class Weights(Rules):
    """A location's score is distance_km * distance + shipping cost * cost - priority * priority; lowest wins."""

    distance: float = Field(1.0, ge=0, description="Per kilometre from the ship-to address")
    cost: float = Field(0.0, ge=0, description="Per currency unit of shipping cost")
    priority: float = Field(0.0, ge=0, description="Per point of node priority")


class ShippingCost(Rules):
    """What shipping from a node to a zone costs. The most specific matching entry wins: a location id over a
    kind over "*", then a country over "*", then the longest postal prefix."""

    node: str = Field("*", min_length=1, description='A location id, a kind (warehouse, store, dropship) or "*"')
    country: str = Field("*", pattern=r"^([A-Z]{2}|\*)$")
    postal_prefix: str = ""
    cost: Decimal = Field(ge=0)


class SkuClass(Rules):
    name: str = Field(min_length=1)
    prefixes: list[str] = Field(min_length=1, description="SKUs starting with one of these are of this class")


class ShipFromStore(Rules):
    disabled_classes: list[str] = Field(default_factory=list, description="SKU classes stores never ship")


class Split(Rules):
    max_nodes: int = Field(1, ge=1, le=5, description="Locations one order may be split over; 1: no split")
    min_order_value: Decimal = Field(Decimal(0), ge=0, description="Below this goods value, no split")


class RuleSet(Rules):
    format: Literal[1] = Field(description="The rule file's format version")
    name: str = Field(min_length=1)
    version: int = Field(ge=1, description="Revision of this rule set, named in every decision")
    weights: Weights = Weights()
    default_shipping_cost: Decimal = Field(Decimal(0), ge=0)
    shipping_costs: list[ShippingCost] = Field(default_factory=list)
    node_priority: dict[str, float] = Field(default_factory=dict, description="By location id or kind; id wins")
    sku_classes: list[SkuClass] = Field(default_factory=list)
    ship_from_store: ShipFromStore = ShipFromStore()
    vendors: dict[str, list[str]] = Field(default_factory=dict,
                                          description="Dropship vendor location id -> SKU prefixes it carries")
    split: Split = Split()

    @model_validator(mode="after")
    def classes_are_declared(self) -> "RuleSet":
        names = [c.name for c in self.sku_classes]
        if len(set(names)) != len(names):
            raise ValueError(f"sku_classes: duplicate class names in {names}")
        unknown = set(self.ship_from_store.disabled_classes) - {*names, DEFAULT_SKU_CLASS}
        if unknown:
            raise ValueError(f"ship_from_store.disabled_classes: undeclared SKU classes {sorted(unknown)}")
        return self

    @property
    def label(self) -> str:
        return f"{self.name}@v{self.version}"

    def sku_class(self, sku: str) -> str:
        matches = [(len(p), c.name) for c in self.sku_classes for p in c.prefixes if sku.startswith(p)]
        return max(matches)[1] if matches else DEFAULT_SKU_CLASS

    def store_ships(self, sku: str) -> bool:
        return self.sku_class(sku) not in self.ship_from_store.disabled_classes

    def vendor_carries(self, location_id: str, sku: str) -> bool:
        return any(sku.startswith(prefix) for prefix in self.vendors.get(location_id, ()))

    def priority(self, location_id: str, kind: str) -> float:
        return self.node_priority.get(location_id, self.node_priority.get(kind, 0.0))

    def shipping_cost(self, location_id: str, kind: str, country: str, postal_code: str) -> Decimal:
        def specificity(rule: ShippingCost) -> tuple[int, int, int] | None:
            node = 2 if rule.node == location_id else 1 if rule.node == kind else 0 if rule.node == "*" else None
            place = 1 if rule.country == country else 0 if rule.country == "*" else None
            if node is None or place is None or not postal_code.startswith(rule.postal_prefix):
                return None
            return node, place, len(rule.postal_prefix)

        matches = [(s, rule.cost) for rule in self.shipping_costs if (s := specificity(rule)) is not None]
        return max(matches, key=lambda match: match[0])[1] if matches else self.default_shipping_cost


class RuleSetError(Exception):
    pass


def load_rule_set(path: Path) -> RuleSet:
    try:
        return RuleSet.model_validate(tomllib.loads(path.read_text(), parse_float=Decimal))
    except OSError as error:
        raise RuleSetError(f"routing rule set {path}: cannot read it ({error.strerror})") from None
    except tomllib.TOMLDecodeError as error:
        raise RuleSetError(f"routing rule set {path}: not valid TOML ({error})") from None
    except ValidationError as error:
        problems = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'file'}: {e['msg']}" for e in error.errors())
        raise RuleSetError(f"routing rule set {path}: {problems}") from None


@cache
def rule_set(path: Path | None) -> RuleSet:
    """The rule set in force: read once per process."""
    return load_rule_set(path or DEFAULT_RULES)
