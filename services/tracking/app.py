"""Tracking service: reads the order, fulfilment, payment and notification events into its read model, and serves
the channels' HTTP API over it (tracking, and intake that stages their commands on their own command topics) and
the customers' tracking page."""

from pathlib import Path

from shared.contracts import REGISTRY
from shared.contracts.topics import (FULFILLMENT_EVENTS, NOTIFICATION_EVENTS, ORDER_COMMANDS, ORDER_EVENTS,
                                     PAYMENT_EVENTS, TRACKING_ORDER_HISTORY)
from shared.messaging.consumer import READ_SIDE_WAIT_MS, Subscription
from shared.messaging.retention import order_purges
from shared.messaging.service import ServiceDefinition

from . import handlers
from .api import build_api

# Order-scoped topics whose every event goes on an order's timeline.
TIMELINE_TOPICS = (ORDER_EVENTS, FULFILLMENT_EVENTS, NOTIFICATION_EVENTS, PAYMENT_EVENTS)


def _everything_on(topic: str) -> Subscription:
    return Subscription(topic=topic, handlers={model: handlers.record_events for model in REGISTRY.values()
                                               if model.topic == topic}, batch_wait_ms=READ_SIDE_WAIT_MS)


SERVICE = ServiceDefinition(
    name="tracking",
    migrations=Path(__file__).parent / "migrations",
    subscriptions=[*(_everything_on(topic) for topic in TIMELINE_TOPICS), order_purges(handlers.forget_orders)],
    publishes=(TRACKING_ORDER_HISTORY,),
    publishes_for_parties=(ORDER_COMMANDS,),
    background=[handlers.publish_histories],
    api=build_api,
)
