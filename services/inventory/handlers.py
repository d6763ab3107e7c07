"""Inventory handlers. Reservation commands are applied a batch at a time: the rows they touch are loaded
locked, every command is applied in order by the domain (each answered with an event; a repeated command gets
the same answer), and the changes are written back together."""

from collections.abc import Callable

from shared.contracts import Contract
from shared.contracts.inventory import (
    AllocateReservation,
    CommitReservation,
    DeallocateReservation,
    ReceiveStock,
    ReleaseReservation,
    ReserveStock,
    StockReceived,
)
from shared.logging import get_logger
from shared.messaging.unit_of_work import Message, UnitOfWork

from . import store
from .domain import Inventory

log = get_logger(__name__)

COMMANDS: dict[type[Contract], Callable[[Inventory, Contract], Contract | None]] = {
    ReserveStock: lambda inventory, cmd: inventory.reserve(cmd.order_id, cmd.lines),
    AllocateReservation: lambda inventory, cmd: inventory.allocate(cmd.order_id, cmd.location_id),
    DeallocateReservation: lambda inventory, cmd: inventory.deallocate(cmd.order_id, cmd.location_id),
    ReleaseReservation: lambda inventory, cmd: inventory.release(cmd.order_id),
    CommitReservation: lambda inventory, cmd: inventory.commit(cmd.order_id),
}


async def reservation_commands(uow: UnitOfWork, batch: list[Message[Contract]]) -> None:
    skus = {line.sku for m in batch if isinstance(m.payload, ReserveStock) for line in m.payload.lines}
    inventory, loaded = await store.load(uow.conn, {m.payload.order_id for m in batch}, skus)
    for message in batch:
        cmd = message.payload
        answer = COMMANDS[type(cmd)](inventory, cmd)
        if answer is None:
            log.warning("inventory.command_ignored", order_id=str(cmd.order_id), event_id=str(message.envelope.id),
                        command=cmd.message_type, status=getattr(inventory.reservations.get(cmd.order_id), "status",
                                                                 "none"))
        else:
            uow.reply(answer, message)
    await store.flush(uow.conn, inventory, loaded)


async def receive_stock(uow: UnitOfWork, batch: list[Message[ReceiveStock]]) -> None:
    for message in batch:
        cmd = message.payload
        on_hand = await store.receive(uow.conn, cmd.receipt_id, cmd.sku, cmd.location_id, cmd.quantity)
        if on_hand is not None:
            uow.reply(StockReceived(receipt_id=cmd.receipt_id, sku=cmd.sku, location_id=cmd.location_id,
                                    quantity=cmd.quantity, on_hand=on_hand), message)
