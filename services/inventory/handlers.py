"""Inventory handlers: each command is answered with an event; repeats of a command get the same answer."""

from shared.contracts.common import Line, ReasonCode
from shared.contracts.inventory import (
    AllocateReservation,
    AllocationFailed,
    CommitReservation,
    DeallocateReservation,
    ReceiveStock,
    ReleaseReservation,
    ReservationAllocated,
    ReservationCommitted,
    ReservationDeallocated,
    ReservationReleased,
    ReserveStock,
    StockReceived,
    StockReserved,
    StockUnavailable,
)
from shared.logging import get_logger
from shared.messaging.consumer import MessageContext

from . import store
from .domain import merge_lines

log = get_logger(__name__)


async def reserve_stock(ctx: MessageContext, cmd: ReserveStock) -> None:
    lines = merge_lines(cmd.lines)
    existing = await store.reservation(ctx.conn, cmd.order_id)
    if existing is None:
        try:
            await store.hold(ctx.conn, cmd.order_id, lines)
        except store.Rejected as no:
            log.info("inventory.reservation_refused", reason=no.code)
            ctx.emit(StockUnavailable(order_id=cmd.order_id, reason=ReasonCode(code=no.code), shortages=no.shortages))
            return
    elif existing["status"] not in ("held", "allocated"):
        ctx.emit(StockUnavailable(order_id=cmd.order_id, shortages=[],
                                  reason=ReasonCode(code="RESERVATION_CLOSED", detail=existing["status"])))
        return
    skus = [line.sku for line in lines]
    ctx.emit(StockReserved(order_id=cmd.order_id, lines=lines, availability=await store.availability(ctx.conn, skus)))


async def allocate_reservation(ctx: MessageContext, cmd: AllocateReservation) -> None:
    existing = await store.reservation(ctx.conn, cmd.order_id)
    if existing is not None and existing["status"] == "allocated" and existing["location_id"] == cmd.location_id:
        ctx.emit(ReservationAllocated(order_id=cmd.order_id, location_id=cmd.location_id))
        return
    if existing is None or existing["status"] != "held":
        status = existing["status"] if existing else "none"
        ctx.emit(AllocationFailed(order_id=cmd.order_id, location_id=cmd.location_id,
                                  reason=ReasonCode(code="RESERVATION_NOT_HELD", detail=status)))
        return
    try:
        await store.allocate(ctx.conn, cmd.order_id, cmd.location_id, _lines(existing))
    except store.Rejected as no:
        ctx.emit(AllocationFailed(order_id=cmd.order_id, location_id=cmd.location_id, reason=ReasonCode(code=no.code)))
        return
    ctx.emit(ReservationAllocated(order_id=cmd.order_id, location_id=cmd.location_id))


async def deallocate_reservation(ctx: MessageContext, cmd: DeallocateReservation) -> None:
    existing = await store.reservation(ctx.conn, cmd.order_id)
    status = existing["status"] if existing else "none"
    if status == "allocated" and existing["location_id"] == cmd.location_id:
        await store.deallocate(ctx.conn, cmd.order_id, cmd.location_id, _lines(existing))
    elif status != "held":
        log.warning("inventory.deallocate_ignored", status=status)
        return
    skus = [line.sku for line in _lines(existing)]
    ctx.emit(ReservationDeallocated(order_id=cmd.order_id, location_id=cmd.location_id,
                                    availability=await store.availability(ctx.conn, skus)))


async def release_reservation(ctx: MessageContext, cmd: ReleaseReservation) -> None:
    existing = await store.reservation(ctx.conn, cmd.order_id)
    previous = existing["status"] if existing else "none"
    if previous in ("held", "allocated"):
        await store.release(ctx.conn, cmd.order_id, previous, existing["location_id"], _lines(existing))
        log.info("inventory.reservation_released", previous=previous, reason=cmd.reason)
    elif previous == "none":
        await store.tombstone(ctx.conn, cmd.order_id)
    if previous == "committed":
        log.warning("inventory.release_ignored", status=previous)
        return
    ctx.emit(ReservationReleased(order_id=cmd.order_id,
                                 previous_status=previous if previous in ("held", "allocated") else "none"))


async def commit_reservation(ctx: MessageContext, cmd: CommitReservation) -> None:
    existing = await store.reservation(ctx.conn, cmd.order_id)
    if existing is None or existing["status"] != "allocated":
        log.warning("inventory.commit_ignored", status=existing["status"] if existing else "none")
        return
    await store.commit(ctx.conn, cmd.order_id, existing["location_id"], _lines(existing))
    ctx.emit(ReservationCommitted(order_id=cmd.order_id, location_id=existing["location_id"]))


async def receive_stock(ctx: MessageContext, cmd: ReceiveStock) -> None:
    on_hand = await store.receive(ctx.conn, cmd.receipt_id, cmd.sku, cmd.location_id, cmd.quantity)
    if on_hand is not None:
        ctx.emit(StockReceived(receipt_id=cmd.receipt_id, sku=cmd.sku, location_id=cmd.location_id,
                               quantity=cmd.quantity, on_hand=on_hand))


def _lines(reservation) -> list[Line]:
    return [Line(**line) for line in reservation["lines"]]
