"""Notification: its settings (channels, customer preferences, bounces), set by ops, and what it tells ops about
customer messages (no PII in the events)."""

import hashlib
from typing import Literal
from uuid import UUID

from pydantic import EmailStr, Field

from .base import NO_CONTROL_CHARACTERS, Contract, contract
from .common import ReasonCode
from .topics import NOTIFICATION_COMMANDS, NOTIFICATION_EVENTS

NotificationKind = Literal["order_confirmed", "order_backordered", "order_ready_for_pickup", "order_picked_up",
                           "order_shipped", "order_delivered", "order_lines_cancelled", "order_cancelled",
                           "return_approved", "return_refunded", "order_edited"]
DeliveryChannel = Literal["email", "webhook"]
SALES_CHANNEL = r"^[a-z0-9][a-z0-9_-]{0,31}$"
# Standard Webhooks: "whsec_" and the base64 of 24 to 64 random bytes.
WEBHOOK_SECRET = r"^whsec_[A-Za-z0-9+/]{32,88}={0,2}$"


def pseudonymous_key(value: str) -> str:
    """A Kafka key for a message about a customer that does not spell the customer out (keys reach logs)."""
    return hashlib.sha256(value.strip().lower().encode()).hexdigest()[:32]


@contract("oms.notification.ConfigureChannel.v1", topic=NOTIFICATION_COMMANDS)
class ConfigureChannel(Contract):
    """How a sales channel's customers are told: by email (from its address) and/or a signed webhook to the
    channel (Standard Webhooks). Replaces the channel's previous settings; a channel never configured gets email
    from the service's default address and no webhook."""

    channel: str = Field(pattern=SALES_CHANNEL, examples=["web"])
    email: bool = True
    from_address: str | None = Field(None, max_length=320, pattern=r"^[^@\s]+@[^@\s]+$",
                                     description="The shop's address (not personal data); default: "
                                                 "OMS_NOTIFICATION_FROM")
    webhook_url: str | None = Field(None, max_length=2000, pattern=r"^https?://[^\s]+$",
                                    examples=["https://shop.example/hooks/oms"])
    webhook_secret: str | None = Field(None, pattern=WEBHOOK_SECRET, repr=False,
                                       description="whsec_<base64>; never logged")
    locale: str = Field("en", pattern=r"^[a-z]{2}(-[A-Z]{2})?$", description="Language of the channel's messages")

    def key(self) -> str:
        return self.channel


@contract("oms.notification.SetCustomerPreference.v1", topic=NOTIFICATION_COMMANDS)
class SetCustomerPreference(Contract):
    """A customer's choice, by email address or customer id: which messages they want (opted out: recorded as
    skipped, never sent)."""

    customer: str = Field(min_length=1, max_length=320, pattern=NO_CONTROL_CHARACTERS,
                          description="The customer's email address or customer id")
    email: bool = Field(True, description="False: no email")
    webhook: bool = Field(True, description="False: the channel is not told by webhook either")

    def key(self) -> str:
        return pseudonymous_key(self.customer)


@contract("oms.notification.RecordBounce.v1", topic=NOTIFICATION_COMMANDS)
class RecordBounce(Contract):
    """Mail to this address bounced: it is not mailed again."""

    address: EmailStr
    detail: str = Field("", max_length=500, pattern=NO_CONTROL_CHARACTERS)

    def key(self) -> str:
        return pseudonymous_key(self.address)


@contract("oms.notification.CustomerNotified.v1", topic=NOTIFICATION_EVENTS)
class CustomerNotified(Contract):
    """A customer message was produced for a lifecycle event (its deliveries are recorded before this is sent)."""

    notification_id: UUID
    order_id: UUID
    kind: NotificationKind
    channel: Literal["email"]


@contract("oms.notification.NotificationDelivered.v1", topic=NOTIFICATION_EVENTS)
class NotificationDelivered(Contract):
    """One delivery of a customer message was accepted by the mail server or the channel's webhook."""

    delivery_id: UUID = Field(description="Also the SMTP Message-ID's local part and the webhook-id header")
    notification_id: UUID
    order_id: UUID
    kind: NotificationKind
    channel: DeliveryChannel
    attempts: int


@contract("oms.notification.NotificationFailed.v1", topic=NOTIFICATION_EVENTS)
class NotificationFailed(Contract):
    """A delivery was given up after its last attempt."""

    delivery_id: UUID
    notification_id: UUID
    order_id: UUID
    kind: NotificationKind
    channel: DeliveryChannel
    attempts: int
    reason: ReasonCode = Field(description="DELIVERY_FAILED, with what the last attempt got (no address)")
