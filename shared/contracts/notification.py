"""Notification: a record that a customer message was produced (for ops and audit; carries no PII)."""

from typing import Literal
from uuid import UUID

from .base import Contract, contract
from .topics import NOTIFICATION_EVENTS

NotificationKind = Literal["order_confirmed", "order_backordered", "order_ready_for_pickup", "order_picked_up", "order_shipped",
                           "order_delivered", "order_lines_cancelled", "order_cancelled"]


@contract("oms.notification.CustomerNotified.v1", topic=NOTIFICATION_EVENTS)
class CustomerNotified(Contract):
    notification_id: UUID
    order_id: UUID
    kind: NotificationKind
    channel: Literal["email"]
