"""Inventory service: consumes inventory commands, answers on the inventory events topic (and asks routing where to
send an order it has just held, when asked to), announces availability changes to channels, expires reservations
held too long, and answers ATP queries over HTTP."""

from pathlib import Path

from shared.contracts.topics import INVENTORY_AVAILABILITY, INVENTORY_COMMANDS, INVENTORY_EVENTS, ROUTING_COMMANDS
from shared.messaging.consumer import Subscription
from shared.messaging.retention import order_purges
from shared.messaging.service import ServiceDefinition

from . import handlers, queries

SERVICE = ServiceDefinition(
    name="inventory",
    migrations=Path(__file__).parent / "migrations",
    subscriptions=[
        Subscription(topic=INVENTORY_COMMANDS,
                     handlers={command: handlers.inventory_commands for command in handlers.COMMANDS}),
        order_purges(handlers.forget_orders),
    ],
    background=[handlers.expire_reservations, handlers.fill_backorders],
    publishes=(INVENTORY_EVENTS, INVENTORY_AVAILABILITY, ROUTING_COMMANDS),  # RouteOrder, when ReserveStock asks
    queries={"/atp/": queries.atp},
)
