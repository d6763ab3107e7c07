"""Notification service: reads order lifecycle events, records one customer message per event."""

from pathlib import Path

from shared.contracts import orders
from shared.contracts.topics import NOTIFICATION_EVENTS, ORDER_EVENTS
from shared.messaging.consumer import Subscription
from shared.messaging.service import ServiceDefinition

from . import handlers

SERVICE = ServiceDefinition(
    name="notification",
    migrations=Path(__file__).parent / "migrations",
    subscriptions=[
        Subscription(
            topic=ORDER_EVENTS,
            handlers={
                orders.OrderAccepted: handlers.lifecycle_events,
                orders.OrderConfirmed: handlers.lifecycle_events,
                orders.OrderBackordered: handlers.lifecycle_events,
                orders.OrderShipped: handlers.lifecycle_events,
                orders.OrderDelivered: handlers.lifecycle_events,
                orders.OrderLinesCancelled: handlers.lifecycle_events,
                orders.OrderReadyForPickup: handlers.lifecycle_events,
                orders.OrderPickedUp: handlers.lifecycle_events,
                orders.OrderCancelled: handlers.lifecycle_events,
            },
        )
    ],
    publishes=(NOTIFICATION_EVENTS,),
)
