"""Routing service: consumes routing commands and the fulfilment events that use and free location capacity,
answers on the routing events topic (and asks inventory to pin an order where it routed it, when asked to)."""

from pathlib import Path

from shared.contracts import fulfillment as fulfillment_events
from shared.contracts import routing as contracts
from shared.contracts.topics import FULFILLMENT_EVENTS, INVENTORY_COMMANDS, ROUTING_COMMANDS, ROUTING_EVENTS
from shared.messaging.consumer import OFF_THE_WAY_WAIT_MS, Subscription
from shared.messaging.retention import order_purges
from shared.messaging.service import ServiceDefinition

from . import handlers

SERVICE = ServiceDefinition(
    name="routing",
    migrations=Path(__file__).parent / "migrations",
    subscriptions=[
        Subscription(
            topic=ROUTING_COMMANDS,
            handlers={
                contracts.RegisterLocation: handlers.register_locations,
                contracts.RouteOrder: handlers.route_orders,
            },
        ),
        Subscription(
            topic=FULFILLMENT_EVENTS,
            handlers={
                fulfillment_events.FulfillmentOrderCreated: handlers.count_capacity,
                fulfillment_events.FulfillmentCancelled: handlers.give_back_capacity,
                fulfillment_events.FulfillmentRejected: handlers.give_back_capacity,
            },
            batch_wait_ms=OFF_THE_WAY_WAIT_MS,  # capacity is counted from these anyway, hops after a decision
        ),
        order_purges(handlers.forget_orders),
    ],
    publishes=(ROUTING_EVENTS, INVENTORY_COMMANDS),  # AllocateReservation, when RouteOrder asks for it
)
