"""Notification service: reads order lifecycle events, records one customer message per event and its deliveries
(email, webhook), and sends them; channel settings, preferences and bounces come as commands."""

from pathlib import Path

from shared.contracts import notification, orders
from shared.contracts.topics import NOTIFICATION_COMMANDS, NOTIFICATION_EVENTS, ORDER_EVENTS
from shared.messaging.consumer import READ_SIDE_WAIT_MS, Subscription
from shared.messaging.retention import order_purges
from shared.messaging.service import ServiceDefinition

from . import delivery, handlers

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
                orders.OrderEdited: handlers.lifecycle_events,
                orders.ReturnApproved: handlers.lifecycle_events,
                orders.ReturnRefunded: handlers.lifecycle_events,
                orders.OrderReadyForPickup: handlers.lifecycle_events,
                orders.OrderPickedUp: handlers.lifecycle_events,
                orders.OrderCancelled: handlers.lifecycle_events,
            },
            batch_wait_ms=READ_SIDE_WAIT_MS,
        ),
        Subscription(
            topic=NOTIFICATION_COMMANDS,
            handlers={
                notification.ConfigureChannel: handlers.commands,
                notification.SetCustomerPreference: handlers.commands,
                notification.RecordBounce: handlers.commands,
            },
            batch_wait_ms=READ_SIDE_WAIT_MS,
        ),
        order_purges(handlers.forget_orders),
    ],
    background=[delivery.deliver_notifications, delivery.clear_old_bodies],
    publishes=(NOTIFICATION_EVENTS,),
)
