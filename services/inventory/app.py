"""Inventory service: consumes inventory commands, answers on the inventory events topic."""

from pathlib import Path

from shared.contracts import inventory as contracts
from shared.contracts.topics import INVENTORY_COMMANDS
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
                contracts.ReserveStock: handlers.reserve_stock,
                contracts.AllocateReservation: handlers.allocate_reservation,
                contracts.DeallocateReservation: handlers.deallocate_reservation,
                contracts.ReleaseReservation: handlers.release_reservation,
                contracts.CommitReservation: handlers.commit_reservation,
                contracts.ReceiveStock: handlers.receive_stock,
            },
        )
    ],
)
