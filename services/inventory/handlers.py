"""Inventory handlers. Reservation commands are applied a batch at a time: the rows they touch are loaded
locked, every command is applied in order by the domain (each answered with an event; a repeated command gets
the same answer), and the changes are written back together."""

from collections.abc import Callable

import asyncpg

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
from shared.messaging.consumer import MessageContext, handles_batches

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


@handles_batches
async def reservation_commands(conn: asyncpg.Connection, batch: list[MessageContext]) -> None:
    commands = [ctx.payload for ctx in batch]
    skus = {line.sku for cmd in commands if isinstance(cmd, ReserveStock) for line in cmd.lines}
    inventory, loaded = await store.load(conn, {cmd.order_id for cmd in commands}, skus)
    for ctx, cmd in zip(batch, commands, strict=True):
        answer = COMMANDS[type(cmd)](inventory, cmd)
        if answer is None:
            log.warning("inventory.command_ignored", order_id=str(cmd.order_id), event_id=str(ctx.envelope.id),
                        command=cmd.message_type, status=getattr(inventory.reservations.get(cmd.order_id), "status",
                                                                 "none"))
        else:
            ctx.emit(answer)
    await store.flush(conn, inventory, loaded)


async def receive_stock(ctx: MessageContext, cmd: ReceiveStock) -> None:
    on_hand = await store.receive(ctx.conn, cmd.receipt_id, cmd.sku, cmd.location_id, cmd.quantity)
    if on_hand is not None:
        ctx.emit(StockReceived(receipt_id=cmd.receipt_id, sku=cmd.sku, location_id=cmd.location_id,
                               quantity=cmd.quantity, on_hand=on_hand))
