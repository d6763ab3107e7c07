"""Tracking: each order's history as the read model keeps it, on a compacted topic (the last record per order
stays), so the read model can be rebuilt for orders older than the other topics' retention."""

from datetime import datetime
from typing import Any
from uuid import UUID

from pydantic import Field

from .base import Contract, contract
from .common import Value
from .topics import TRACKING_ORDER_HISTORY


class TrackedEvent(Value):
    event_id: UUID
    at: datetime
    type: str = Field(examples=["OrderShipped"])
    topic: str = Field(examples=["orders.events.v1"])
    data: dict[str, Any] = Field(description="The event's payload without the customer's personal data")


@contract("oms.tracking.OrderHistory.v1", topic=TRACKING_ORDER_HISTORY)
class OrderHistory(Contract):
    """Every event of the order the tracking service has read so far, in time order; the next one supersedes it."""

    order_id: UUID
    events: list[TrackedEvent]
