"""Fulfillment service: requests from the saga, progress from locations, location kinds from routing; publishes
work, dropship purchase orders and ERP events.

A request names its location's kind (routing's plan); the kinds routing registers are for requests from senders
that predate that field, so they are read in batches, like anything off an order's way: most of that topic is
routing's decisions, which fulfillment skips."""

from pathlib import Path

from shared.contracts import fulfillment as contracts
from shared.contracts.routing import LocationRegistered
from shared.contracts.topics import (
    FULFILLMENT_COMMANDS,
    FULFILLMENT_DROPSHIP_ORDERS,
    FULFILLMENT_EVENTS,
    FULFILLMENT_LOCATION_UPDATES,
    FULFILLMENT_WORK,
    ROUTING_EVENTS,
)
from shared.messaging.consumer import OFF_THE_WAY_WAIT_MS, Subscription
from shared.messaging.retention import order_purges
from shared.messaging.service import ServiceDefinition

from . import dropship, handlers

SERVICE = ServiceDefinition(
    name="fulfillment",
    migrations=Path(__file__).parent / "migrations",
    subscriptions=[
        Subscription(topic=FULFILLMENT_COMMANDS,
                     handlers={contracts.RequestFulfillment: handlers.request_fulfillment,
                               contracts.CancelFulfillment: handlers.cancel_fulfillment,
                               contracts.AmendFulfillment: handlers.amend_fulfillment,
                               contracts.ExpectReturn: handlers.expect_returns},
                     locks_first=handlers.lock_orders),
        Subscription(topic=FULFILLMENT_LOCATION_UPDATES,
                     handlers={contracts.LocationUpdate: handlers.location_updates,
                               contracts.ReturnReceipt: handlers.return_receipts}, per_party=True,
                     locks_first=handlers.lock_orders),
        Subscription(topic=ROUTING_EVENTS, handlers={LocationRegistered: handlers.record_location_kinds},
                     batch_wait_ms=OFF_THE_WAY_WAIT_MS),
        order_purges(handlers.forget_orders),
    ],
    background=[handlers.expire_uncollected, dropship.withdraw_unacknowledged],
    publishes=(FULFILLMENT_WORK, FULFILLMENT_DROPSHIP_ORDERS, FULFILLMENT_EVENTS),
)
