"""Routing service: consumes routing commands, answers on the routing events topic."""

from pathlib import Path

from shared.contracts import routing as contracts
from shared.contracts.topics import ROUTING_COMMANDS, ROUTING_EVENTS
from shared.messaging.consumer import Subscription
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
        )
    ],
    publishes=(ROUTING_EVENTS,),
)
