"""Every command and event the OMS exchanges, as versioned pydantic models, with their topics."""

from . import fulfillment, inventory, notification, ops, orders, payments, routing, tracking  # noqa: F401  (registers the contracts)
from .base import REGISTRY, Contract, Envelope, wrap

__all__ = ["REGISTRY", "Contract", "Envelope", "wrap"]
