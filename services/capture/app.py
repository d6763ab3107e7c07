"""Capture service: channel orders in; the order saga listens to inventory, routing and fulfillment replies."""

from pathlib import Path

from shared.contracts.orders import CancelOrder, PlaceOrder
from shared.contracts.topics import (
    FULFILLMENT_COMMANDS,
    FULFILLMENT_EVENTS,
    INVENTORY_COMMANDS,
    INVENTORY_EVENTS,
    ORDER_COMMANDS,
    ORDER_EVENTS,
    ROUTING_COMMANDS,
    ROUTING_EVENTS,
)
from shared.messaging.consumer import Subscription
from shared.messaging.service import ServiceDefinition

from . import handlers
from .saga import REPLY_TYPES
from .validation import rejection


def _replies_on(topic: str) -> Subscription:
    return Subscription(topic=topic, handlers={reply: handlers.saga_replies for reply in REPLY_TYPES
                                               if reply.topic == topic})


SERVICE = ServiceDefinition(
    name="capture",
    migrations=Path(__file__).parent / "migrations",
    subscriptions=[
        Subscription(topic=ORDER_COMMANDS,
                     handlers={PlaceOrder: handlers.place_orders, CancelOrder: handlers.cancel_orders},
                     on_invalid_payload=rejection, per_party=True),
        _replies_on(INVENTORY_EVENTS),
        _replies_on(ROUTING_EVENTS),
        _replies_on(FULFILLMENT_EVENTS),
    ],
    background=[handlers.expire_deadlines],
    publishes=(ORDER_EVENTS, INVENTORY_COMMANDS, ROUTING_COMMANDS, FULFILLMENT_COMMANDS),
)
