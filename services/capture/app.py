"""Capture service: channel orders (and holds) in; the order saga listens to inventory, routing, fulfillment and
payment replies."""

from pathlib import Path

from shared.contracts.fulfillment import ReturnReceived
from shared.contracts.orders import (
    CancelOrder,
    CancelOrderLines,
    EditOrder,
    HoldOrder,
    PlaceOrder,
    ReleaseHold,
    RequestReturn,
)
from shared.contracts.payments import PaymentRefunded
from shared.contracts.topics import (
    FULFILLMENT_COMMANDS,
    FULFILLMENT_EVENTS,
    INVENTORY_COMMANDS,
    INVENTORY_EVENTS,
    ORDER_COMMANDS,
    ORDER_EVENTS,
    ORDER_PURGES,
    PAYMENT_COMMANDS,
    PAYMENT_EVENTS,
    ROUTING_COMMANDS,
    ROUTING_EVENTS,
)
from shared.messaging.consumer import OFF_THE_WAY_WAIT_MS, Subscription
from shared.messaging.service import ServiceDefinition

from . import handlers, metrics, retention
from .saga import ANSWERED_ELSEWHERE, REPLY_TYPES
from .validation import rejection


def _replies_on(topic: str, others: dict | None = None, batch_wait_ms: int | None = None) -> Subscription:
    """The saga's replies on the topic, and handlers of the `others` there."""
    replies = {reply: handlers.saga_replies for reply in REPLY_TYPES if reply.topic == topic}
    unread = {reply: flag for reply, flag in ANSWERED_ELSEWHERE.items() if reply.topic == topic}
    return Subscription(topic=topic, handlers={**replies, **(others or {})}, skipped_when=unread,
                        batch_wait_ms=batch_wait_ms, locks_first=handlers.lock_sagas)


SERVICE = ServiceDefinition(
    name="capture",
    migrations=Path(__file__).parent / "migrations",
    subscriptions=[
        Subscription(topic=ORDER_COMMANDS,
                     handlers={PlaceOrder: handlers.place_orders, CancelOrder: handlers.cancel_orders,
                               HoldOrder: handlers.hold_commands, ReleaseHold: handlers.hold_commands,
                               RequestReturn: handlers.request_returns, EditOrder: handlers.edit_orders,
                               CancelOrderLines: handlers.edit_orders},
                     on_invalid_payload=rejection, per_party=True, locks_first=handlers.lock_sagas),
        _replies_on(INVENTORY_EVENTS),
        # Off the way: a first sourcing's decision is not read (inventory's answer follows it); what is read —
        # no route, a part re-sourced — may come later. Without the wait, each order's decision woke capture alone.
        _replies_on(ROUTING_EVENTS, batch_wait_ms=OFF_THE_WAY_WAIT_MS),
        _replies_on(FULFILLMENT_EVENTS, {ReturnReceived: handlers.returns_received}),
        _replies_on(PAYMENT_EVENTS, {PaymentRefunded: handlers.refunds_paid}),
    ],
    background=[handlers.expire_deadlines, metrics.watch_deadlines, retention.purge_closed_orders],
    publishes=(ORDER_EVENTS, ORDER_PURGES, INVENTORY_COMMANDS, ROUTING_COMMANDS, FULFILLMENT_COMMANDS,
               PAYMENT_COMMANDS),
)
