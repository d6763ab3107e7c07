"""Inventory service: consumes inventory commands, answers on the inventory events topic."""

from pathlib import Path

from shared.contracts import inventory as contracts
from shared.contracts.topics import INVENTORY_COMMANDS, INVENTORY_EVENTS
from shared.messaging.consumer import Subscription
from shared.messaging.service import ServiceDefinition

from . import handlers

SERVICE = ServiceDefinition(
    name="inventory",
    migrations=Path(__file__).parent / "migrations",
    subscriptions=[
        Subscription(
            topic=INVENTORY_COMMANDS,
            handlers={
                **{command: handlers.reservation_commands for command in handlers.COMMANDS},
                contracts.ReceiveStock: handlers.receive_stock,
            },
        )
    ],
    publishes=(INVENTORY_EVENTS,),
)
