"""Inventory handlers. Commands are applied a batch at a time: the rows they touch are loaded locked, every
command is applied in order by the domain (each answered with an event; a repeated command gets the same
answer), and the changes are written back together with their ledger entries. A SKU whose network ATP crosses
zero or the low-stock threshold is announced (`AvailabilityChanged`) in the same transaction."""

import asyncio
from collections.abc import Callable

from shared.contracts import Contract
from shared.contracts.inventory import (
    AdjustStock,
    AllocateReservation,
    CommitReservation,
    DeallocateReservation,
    ExpectReceipt,
    ExtendReservation,
    ReceiveStock,
    RecordCycleCount,
    ReleaseReservation,
    ReserveStock,
    ReservationExtended,
    ReservationExtensionRefused,
    SetSafetyStock,
    StockAdjusted,
    StockReserved,
)
from shared.contracts.orders import OrderPurged
from shared.contracts.routing import RouteOrder
from shared.logging import get_logger
from shared.messaging.retention import purged_order_ids
from shared.messaging.retry import run_forever, run_in_batches
from shared.messaging.unit_of_work import Begin, Message, UnitOfWork

from . import store
from .domain import Inventory

log = get_logger(__name__)

RESERVATIONS: dict[type[Contract], Callable[[Inventory, Message], Contract | None]] = {
    ReserveStock: lambda inventory, m: inventory.reserve(m.payload.order_id, m.payload.lines, m.correlation_id,
                                                         m.payload.backorder_skus),
    AllocateReservation: lambda inventory, m: inventory.allocate(m.payload.order_id, m.payload.location_id,
                                                                 m.payload.assignments),
    DeallocateReservation: lambda inventory, m: inventory.deallocate(m.payload.order_id, m.payload.location_id),
    ReleaseReservation: lambda inventory, m: inventory.release(m.payload.order_id, m.payload.lines,
                                                               m.payload.location_id),
    CommitReservation: lambda inventory, m: inventory.commit(m.payload.order_id, m.payload.lines,
                                                             m.payload.location_id),
}


STOCK = (ReceiveStock, RecordCycleCount, AdjustStock, SetSafetyStock, ExpectReceipt)
COMMANDS = (*RESERVATIONS, ExtendReservation, *STOCK)


async def inventory_commands(uow: UnitOfWork, batch: list[Message[Contract]]) -> None:
    inventory, loaded = await _load(uow, batch)
    for message in batch:
        inventory.cause = str(message.envelope.id)
        answer = await _apply(uow, inventory, message)
        if isinstance(answer, StockReserved) and (onward := _onward_routing(inventory, message.payload, answer)):
            answer = answer.model_copy(update={"routing_requested": True})
            uow.reply(onward, message)
        if answer is not None:
            uow.reply(answer, message)
        for change in inventory.availability_changes():
            uow.reply(change, message)
    await store.flush(uow.conn, inventory, loaded)


async def _load(uow: UnitOfWork, batch: list[Message[Contract]]) -> tuple[Inventory, Inventory]:
    payloads = [m.payload for m in batch]
    skus = {line.sku for p in payloads if isinstance(p, (ReserveStock, ExtendReservation)) for line in p.lines}
    skus |= {p.sku for p in payloads if isinstance(p, STOCK) and p.sku is not None}
    locations = {p.location_id for p in payloads if isinstance(p, STOCK)}
    for p in payloads:
        if isinstance(p, SetSafetyStock) and p.sku is None:
            skus |= await store.skus_at(uow.conn, p.location_id)
    order_ids = {p.order_id for p in payloads if isinstance(p, (*RESERVATIONS, ExtendReservation))}
    inventory, loaded = await store.load(uow.conn, order_ids, skus, locations)
    inventory.watch_availability(uow.settings.low_stock_threshold)
    return inventory, loaded


async def _apply(uow: UnitOfWork, inventory: Inventory, message: Message) -> Contract | None:
    cmd = message.payload
    match cmd:
        case ReceiveStock():
            if not await store.claim_receipt(uow.conn, cmd.receipt_id, cmd.sku, cmd.location_id, cmd.quantity):
                return _ignored(message, "receipt already booked", inventory)
            await store.mark_received(uow.conn, cmd.receipt_id)
            return inventory.receive(cmd.receipt_id, cmd.sku, cmd.location_id, cmd.quantity)
        case ExpectReceipt():
            if not await store.expect_receipt(uow.conn, cmd.receipt_id, cmd.sku, cmd.location_id, cmd.quantity,
                                              cmd.expected_on):
                return _ignored(message, "receipt already announced", inventory)
            return inventory.expect(cmd.receipt_id, cmd.sku, cmd.quantity, cmd.expected_on)
        case RecordCycleCount() | AdjustStock():
            return await _adjust(uow, inventory, message)
        case SetSafetyStock():
            return inventory.set_safety_stock(cmd.location_id, cmd.sku, cmd.quantity)
        case ExtendReservation():
            return await _extend(uow, inventory, cmd)
    answer = RESERVATIONS[type(cmd)](inventory, message)
    return answer if answer is not None else _ignored(message, "nothing to do in this state", inventory)


def _onward_routing(inventory: Inventory, cmd: ReserveStock, reserved: StockReserved) -> RouteOrder | None:
    """Held and not yet pinned, as `route` asks: routing is asked from here, which saves the saga the round trip
    of asking once it has the answer. Its answers (and inventory's to the pinning it asks for) go to the saga."""
    if cmd.route is None or inventory.reservations[cmd.order_id].status != "held":
        return None
    return RouteOrder(order_id=cmd.order_id, lines=cmd.lines, delivery=cmd.route.delivery,
                      availability=reserved.availability, exclude_locations=cmd.route.exclude_locations,
                      order_value=cmd.route.order_value, allocate=True)


async def _adjust(uow: UnitOfWork, inventory: Inventory, message: Message) -> Contract | None:
    """A count or adjustment, once per document id; a refused one books nothing and may be sent again."""
    cmd = message.payload
    if await store.document_booked(uow.conn, cmd.document_id):
        return _ignored(message, "document already booked", inventory)
    if isinstance(cmd, RecordCycleCount):
        answer = inventory.count(cmd.document_id, cmd.sku, cmd.location_id, cmd.counted)
    else:
        answer = inventory.adjust(cmd.document_id, cmd.sku, cmd.location_id, cmd.change)
    if isinstance(answer, StockAdjusted):
        await store.book_document(uow.conn, cmd.document_id, answer.kind, cmd.sku, cmd.location_id, answer.change)
    return answer


async def _extend(uow: UnitOfWork, inventory: Inventory, cmd: ExtendReservation) -> Contract:
    """Once per edit: asked again (the saga's deadline), the first answer."""
    if (earlier := await store.extension_answer(uow.conn, cmd.order_id, cmd.edit_id)) is not None:
        return (ReservationExtended if "lines" in earlier else ReservationExtensionRefused).model_validate(earlier)
    answer = inventory.extend(cmd.order_id, cmd.edit_id, cmd.lines)
    await store.record_extension(uow.conn, cmd.order_id, cmd.edit_id, answer.model_dump(mode="json"))
    return answer


def _ignored(message: Message, why: str, inventory: Inventory) -> None:
    cmd = message.payload
    order_id = getattr(cmd, "order_id", None)
    log.warning("inventory.command_ignored", order_id=str(order_id) if order_id else None,
                event_id=str(message.envelope.id), correlation_id=message.correlation_id,
                trace_id=message.trace_id, command=cmd.message_type, why=why,
                status=getattr(inventory.reservations.get(order_id), "status", "none"))
    return None


async def expire_reservations(begin: Begin, interval: float = 0.5, batch: int = 100) -> None:
    """Background task: release reservations held (never allocated) for longer than the TTL and tell the saga.
    Several inventory instances may run it: each expiry is decided again once the order is locked."""
    await run_in_batches("reservation-expiry", lambda: _expire_due(begin, batch), batch, interval)


async def _expire_due(begin: Begin, batch: int) -> int:
    async with begin() as uow:
        ttl = uow.settings.reservation_ttl_seconds
        candidates = await store.due_reservations(uow.conn, ttl, batch)
        if not candidates:
            return 0
        inventory, loaded = await store.load(uow.conn, set(candidates), set())
        due = await store.due_reservations(uow.conn, ttl, batch, among=list(candidates))
        inventory.watch_availability(uow.settings.low_stock_threshold)
        for order_id, correlation_id in due.items():
            inventory.cause = f"expiry:{order_id}"
            expired = inventory.expire(order_id)
            correlation_id = correlation_id or str(order_id)
            log.info("inventory.reservation_expired", order_id=str(order_id), correlation_id=correlation_id)
            for event in [expired, *inventory.availability_changes()]:
                if event is not None:
                    uow.emit(event, correlation_id=correlation_id)
        await store.flush(uow.conn, inventory, loaded)
        return len(candidates)



async def fill_backorders(begin: Begin, interval: float = 0.5, batch: int = 200) -> None:
    """Background task: hold waiting (backordered) orders as arrivals cover them, first come first served, and
    tell the saga (StockReserved). Locks like a batch of commands: the orders, then their SKUs."""
    async def scan() -> None:
        while True:
            await _fill(begin, batch)
            await asyncio.sleep(interval)

    await run_forever("backorders", scan)


async def _fill(begin: Begin, batch: int) -> None:
    async with begin() as uow:
        waiting = await store.waiting_orders(uow.conn, batch)
        if not waiting:
            return
        inventory, loaded = await store.load(uow.conn, set(waiting), set())
        inventory.watch_availability(uow.settings.low_stock_threshold)
        inventory.cause = "backorder"
        for reserved in inventory.fill_backorders(waiting):
            correlation_id = inventory.reservations[reserved.order_id].correlation_id or str(reserved.order_id)
            log.info("inventory.backorder_filled", order_id=str(reserved.order_id), correlation_id=correlation_id)
            uow.emit(reserved, correlation_id=correlation_id)
        for change in inventory.availability_changes():
            uow.emit(change, correlation_id=change.sku)
        await store.flush(uow.conn, inventory, loaded)


async def forget_orders(uow: UnitOfWork, batch: list[Message[OrderPurged]]) -> None:
    still_holding = await store.forget_orders(uow.conn, purged_order_ids(batch))
    for order_id in still_holding:
        log.warning("inventory.purged_order_still_holds_units", order_id=str(order_id))
