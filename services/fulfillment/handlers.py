"""Fulfillment handlers: create and withdraw work for a location (a purchase order for a dropship vendor); turn
its reports into ERP events."""

from collections import Counter
from datetime import UTC, datetime

import asyncpg

from shared.contracts import Contract
from shared.contracts.common import Line, ReasonCode, merge_lines, subtract_lines
from shared.contracts.fulfillment import (
    AmendFulfillment,
    CancelFulfillment,
    DeliveryConfirmed,
    ExpectReturn,
    FulfillmentAmended,
    FulfillmentAmendmentRefused,
    FulfillmentCancellationRefused,
    FulfillmentCancelled,
    FulfillmentOrderAmended,
    FulfillmentOrderCreated,
    FulfillmentOrderProgressed,
    FulfillmentRejected,
    FulfillmentRequested,
    FulfillmentWithdrawn,
    LocationUpdate,
    PartAmendment,
    PickupCompleted,
    PickupExpired,
    PurchaseOrderAmended,
    PurchaseOrderCancelled,
    PurchaseOrderIssued,
    RequestFulfillment,
    ReturnExpected,
    ReturnReceipt,
    ReturnReceived,
    ShipmentConfirmed,
    fulfillment_order_id,
    purchase_order_number,
    shipment_id,
)
from shared.contracts.money import Billing, ShipmentAmounts, shipment_amounts
from shared.contracts.orders import OrderPurged
from shared.contracts.routing import LocationRegistered
from shared.logging import get_logger
from shared.messaging.retention import purged_order_ids
from shared.messaging.retry import run_in_batches
from shared.messaging.unit_of_work import Begin, Message, UnitOfWork

from .domain import CANCELLABLE, advances, belongs, is_purchase_order, ship_by, status_after

HANDED_OVER = {"partially_shipped": "ALREADY_SHIPPED", "shipped": "ALREADY_SHIPPED", "delivered": "ALREADY_SHIPPED",
               "picked_up": "ALREADY_PICKED_UP"}

log = get_logger(__name__)


async def request_fulfillment(uow: UnitOfWork, batch: list[Message[RequestFulfillment]]) -> None:
    """Create the batch's fulfilment orders in one statement; a repeated request finds its existing one. A
    dropship vendor's goes out as a purchase order, anyone else's as a work item: the location's kind as the
    request gives it (routing's plan), or for a sender that predates that, as routing last registered it."""
    kinds = await _location_kinds(uow, {m.payload.location_id for m in batch if m.payload.location_kind is None})
    requests = []
    for m in batch:
        fo_id = m.payload.fulfillment_order_id or fulfillment_order_id(m.payload.order_id, m.payload.location_id)
        kind = m.payload.location_kind or kinds.get(m.payload.location_id)
        dropship = is_purchase_order(kind, m.payload.delivery.type)
        requests.append((m, fo_id, purchase_order_number(fo_id) if dropship else None))
    created = await uow.conn.fetch(
        """INSERT INTO fulfillment_orders (fulfillment_order_id, order_id, location_id, status, lines, delivery,
                                          correlation_id, purchase_order, billing)
           SELECT f.fulfillment_order_id, f.order_id, f.location_id, 'requested', f.lines, f.delivery,
                  f.correlation_id, f.purchase_order, f.billing
           FROM jsonb_to_recordset($1::jsonb) AS f(fulfillment_order_id uuid, order_id uuid, location_id text,
                                                  lines jsonb, delivery jsonb, correlation_id text,
                                                  purchase_order text, billing jsonb)
           ON CONFLICT DO NOTHING RETURNING fulfillment_order_id""",
        [{"fulfillment_order_id": str(fo_id), "order_id": str(m.payload.order_id),
          "location_id": m.payload.location_id, "lines": [line.model_dump() for line in m.payload.lines],
          "delivery": m.payload.delivery.model_dump(mode="json"), "correlation_id": m.correlation_id,
          "purchase_order": po,
          "billing": m.payload.billing.model_dump(mode="json") if m.payload.billing else None}
         for m, fo_id, po in requests],
    )
    new = {r["fulfillment_order_id"] for r in created}
    for message, fo_id, po in requests:
        cmd = message.payload
        if fo_id in new:
            new.discard(fo_id)
            uow.reply(_work(cmd, fo_id, po), message)
        uow.reply(FulfillmentOrderCreated(fulfillment_order_id=fo_id, order_id=cmd.order_id,
                                          location_id=cmd.location_id, lines=cmd.lines), message)


def _work(cmd: RequestFulfillment, fo_id, purchase_order: str | None) -> Contract:
    ids = {"fulfillment_order_id": fo_id, "order_id": cmd.order_id, "location_id": cmd.location_id,
           "lines": cmd.lines}
    if purchase_order:
        return PurchaseOrderIssued(**ids, purchase_order_number=purchase_order, ship_to=cmd.delivery.address,
                                   ship_by=ship_by(datetime.now(UTC).date()))
    return FulfillmentRequested(**ids, delivery=cmd.delivery)


async def _location_kinds(uow: UnitOfWork, location_ids: set[str]) -> dict[str, str]:
    if not location_ids:
        return {}
    rows = await uow.conn.fetch("SELECT location_id, kind FROM location_kinds WHERE location_id = ANY($1)",
                                list(location_ids))
    return {r["location_id"]: r["kind"] for r in rows}


async def record_location_kinds(uow: UnitOfWork, batch: list[Message[LocationRegistered]]) -> None:
    """What routing registers: the last word on each location wins (one location's events share a partition)."""
    latest = {m.payload.location_id: m.payload.kind for m in batch}
    await uow.conn.execute(
        """INSERT INTO location_kinds (location_id, kind)
           SELECT * FROM unnest($1::text[], $2::text[])
           ON CONFLICT (location_id) DO UPDATE SET kind = excluded.kind, updated_at = now()""",
        list(latest), list(latest.values()))


async def cancel_fulfillment(uow: UnitOfWork, batch: list[Message[CancelFulfillment]]) -> None:
    for message in batch:
        await _cancel(uow, message)


async def _cancel(uow: UnitOfWork, message: Message[CancelFulfillment]) -> None:
    cmd = message.payload
    ids = {"order_id": cmd.order_id, "location_id": cmd.location_id,
           "fulfillment_order_id": cmd.fulfillment_order_id or fulfillment_order_id(cmd.order_id, cmd.location_id)}
    row = await uow.conn.fetchrow("SELECT status, purchase_order FROM fulfillment_orders "
                                  "WHERE fulfillment_order_id = $1 FOR UPDATE", ids["fulfillment_order_id"])
    if row is not None and row["status"] in HANDED_OVER:
        uow.reply(FulfillmentCancellationRefused(**ids, reason=ReasonCode(code=HANDED_OVER[row["status"]])), message)
        return
    if row is not None and row["status"] in CANCELLABLE:
        await _set_status(uow, ids["fulfillment_order_id"], "cancelled")
        uow.reply(PurchaseOrderCancelled(**ids, purchase_order_number=row["purchase_order"])
                  if row["purchase_order"] else FulfillmentWithdrawn(**ids), message)
    uow.reply(FulfillmentCancelled(**ids, existed=row is not None), message)


ORDER_LOCKS = 7302  # the advisory lock class of fulfillment's orders (two-key locks)
AMENDABLE = frozenset({"requested", "accepted"})
AMENDMENT_REFUSALS = {"picked": "ALREADY_PICKED", "packed": "ALREADY_PICKED", "ready_for_pickup": "ALREADY_PICKED",
                      **HANDED_OVER, "rejected": "FULFILLMENT_CLOSED", "cancelled": "FULFILLMENT_CLOSED"}


async def lock_orders(uow: UnitOfWork, batch: list[Message]) -> None:
    """The batch's orders locked, in one order, before its handlers run (`Subscription.locks_first`): a shipment
    is priced from the order's earlier ones (whichever location shipped them), an amendment changes several of
    its fulfilment orders at once, and cancellations and updates lock their rows message by message. A batch of
    new requests alone needs none: it locks no row there already."""
    if all(isinstance(m.payload, RequestFulfillment) for m in batch):
        return
    keys = sorted({int.from_bytes(m.payload.order_id.bytes[:4], "big", signed=True) for m in batch})
    await uow.conn.execute("SELECT count(pg_advisory_xact_lock($1, key)) FROM unnest($2::int4[]) AS key",
                           ORDER_LOCKS, keys)


async def amend_fulfillment(uow: UnitOfWork, batch: list[Message[AmendFulfillment]]) -> None:
    for message in batch:
        await _amend(uow, message)


async def _amend(uow: UnitOfWork, message: Message[AmendFulfillment]) -> None:
    """All the asked changes, or none: refused if any fulfilment order is picked (or further) or closed. A
    fulfilment order already as asked (the same amendment asked again) is left alone; the location hears of
    each change (FulfillmentOrderAmended, or withdrawn)."""
    cmd = message.payload
    rows = {r["fulfillment_order_id"]: r for r in await uow.conn.fetch(
        "SELECT * FROM fulfillment_orders WHERE fulfillment_order_id = ANY($1) AND order_id = $2 FOR UPDATE",
        [part.fulfillment_order_id for part in cmd.parts], cmd.order_id)}
    billing = cmd.billing.model_dump(mode="json") if cmd.billing else None
    changes = [(part, rows.get(part.fulfillment_order_id)) for part in cmd.parts]
    for part, row in changes:
        if row is None or not _as_asked(row, part, billing) and row["status"] not in AMENDABLE:
            code = AMENDMENT_REFUSALS.get(row["status"], "FULFILLMENT_CLOSED") if row else "UNKNOWN_FULFILLMENT_ORDER"
            uow.reply(FulfillmentAmendmentRefused(order_id=cmd.order_id, edit_id=cmd.edit_id,
                                                  fulfillment_order_id=part.fulfillment_order_id,
                                                  location_id=part.location_id, reason=ReasonCode(code=code)), message)
            return
    for part, row in changes:
        if not _as_asked(row, part, billing):
            await _apply_amendment(uow, message, part, row, billing)
    uow.reply(FulfillmentAmended(order_id=cmd.order_id, edit_id=cmd.edit_id, parts=cmd.parts), message)


def _as_asked(row: asyncpg.Record, part: PartAmendment, billing: dict | None) -> bool:
    if not part.lines:
        return row["status"] == "cancelled"
    return merge_lines([Line(**line) for line in row["lines"]]) == merge_lines(part.lines) and row["billing"] == billing


async def _apply_amendment(uow: UnitOfWork, message: Message, part: PartAmendment, row: asyncpg.Record,
                           billing: dict | None) -> None:
    ids = {"fulfillment_order_id": part.fulfillment_order_id, "order_id": row["order_id"],
           "location_id": row["location_id"]}
    if not part.lines:
        await _set_status(uow, part.fulfillment_order_id, "cancelled")
        uow.reply(PurchaseOrderCancelled(**ids, purchase_order_number=row["purchase_order"])
                  if row["purchase_order"] else FulfillmentWithdrawn(**ids), message)
        return
    await uow.conn.execute("UPDATE fulfillment_orders SET lines = $2, billing = $3, updated_at = now() "
                           "WHERE fulfillment_order_id = $1", part.fulfillment_order_id,
                           [line.model_dump() for line in part.lines], billing)
    if merge_lines([Line(**line) for line in row["lines"]]) != merge_lines(part.lines):
        uow.reply(PurchaseOrderAmended(**ids, purchase_order_number=row["purchase_order"], lines=part.lines)
                  if row["purchase_order"] else FulfillmentOrderAmended(**ids, lines=part.lines), message)


async def location_updates(uow: UnitOfWork, batch: list[Message[LocationUpdate]]) -> None:
    """Each report applied in turn, the batch's orders locked first (lock_orders)."""
    for message in batch:
        await _location_update(uow, message)


async def _location_update(uow: UnitOfWork, message: Message[LocationUpdate]) -> None:
    update = message.payload
    row = await uow.conn.fetchrow(
        "SELECT * FROM fulfillment_orders WHERE fulfillment_order_id = $1 FOR UPDATE", update.fulfillment_order_id
    )
    if refusal := _refusal(update, row, message.sender):
        uow.refuse(message, *refusal)
        return
    if not advances(row["delivery"]["type"], row["status"], update.status):
        log.info("fulfillment.update_ignored", order_id=str(update.order_id), event_id=str(message.envelope.id),
                 trace_id=message.trace_id, current=row["status"], reported=update.status)
        return
    ids = {"fulfillment_order_id": update.fulfillment_order_id, "order_id": update.order_id,
           "location_id": row["location_id"]}
    lines = [Line(**line) for line in row["lines"]]
    unshipped = subtract_lines(lines, [Line(**line) for line in row["shipped_lines"]])
    parcel, left, amounts = [], unshipped, None
    if update.status in ("shipped", "picked_up"):
        parcel = merge_lines(update.lines) if update.lines and update.status == "shipped" else unshipped
        left = subtract_lines(unshipped, parcel)
        if left is None or not parcel:
            uow.refuse(message, "OVER_SHIPPED",
                       f"shipment of {_described(parcel)} on fulfillment order {update.fulfillment_order_id}, "
                       f"which has {_described(unshipped)} to ship")
            return
        amounts = await _priced(uow.conn, row, parcel)
    if update.status == "shipped" and not await _record_shipment(uow, update, parcel, amounts):
        log.info("fulfillment.shipment_repeated", order_id=str(update.order_id),
                 event_id=str(message.envelope.id), trace_id=message.trace_id)
        return
    status = status_after(row["status"], update.status, bool(left))
    await _set_status(uow, update.fulfillment_order_id, status, update, parcel if update.status == "shipped" else [])
    event = _event(update, ids, lines, parcel, unshipped, complete=status == "shipped", amounts=amounts,
                   reported_at=message.envelope.time)
    uow.reply(event, message, correlation_id=row["correlation_id"])


async def _priced(conn: asyncpg.Connection, row: asyncpg.Record, parcel: list[Line]) -> ShipmentAmounts | None:
    """What a parcel is worth, after what the order's earlier shipments (from any location) took (the order is
    locked). None for a fulfilment order requested without the order's charges."""
    if row["billing"] is None:
        return None
    earlier = await conn.fetch("SELECT s.lines FROM shipments s JOIN fulfillment_orders f USING (fulfillment_order_id) "
                               "WHERE f.order_id = $1", row["order_id"])
    shipped_before: Counter[str] = Counter()
    for shipment in earlier:
        shipped_before.update({line["sku"]: line["quantity"] for line in shipment["lines"]})
    return shipment_amounts(Billing.model_validate(row["billing"]), parcel, shipped_before, first=not earlier)


def _refusal(update: LocationUpdate, row: asyncpg.Record | None, sender: str | None) -> tuple[str, str] | None:
    """Why a report cannot be applied (reason code, detail): no such fulfilment order, another location's, or a
    step its kind of delivery does not have."""
    if row is None or row["order_id"] != update.order_id:
        return "UNKNOWN_FULFILLMENT_ORDER", (f"no fulfillment order {update.fulfillment_order_id} "
                                             f"for order {update.order_id}")
    if sender is not None and sender != row["location_id"]:
        return "LOCATION_MISMATCH", (f"location {sender} reported on fulfillment order {update.fulfillment_order_id}, "
                                     f"which is {row['location_id']}'s")
    delivery = row["delivery"]["type"]
    if not belongs(delivery, update.status):
        return "WRONG_DELIVERY_STEP", (f"{update.status} is not a step of a {delivery} fulfillment order "
                                       f"({update.fulfillment_order_id})")
    return None


def _event(update: LocationUpdate, ids: dict, lines: list[Line], parcel: list[Line], unshipped: list[Line],
           complete: bool, amounts: ShipmentAmounts | None, reported_at: datetime) -> Contract:
    """What the ERP and the saga hear of a location's report, dated when the location reported it."""
    match update.status:
        case "shipped":
            return ShipmentConfirmed(**ids, shipment_id=shipment_id(update.fulfillment_order_id,
                                                                    update.tracking_number),
                                     lines=parcel, carrier=update.carrier, tracking_number=update.tracking_number,
                                     shipped_at=reported_at, complete=complete, amounts=amounts)
        case "delivered":
            return DeliveryConfirmed(**ids, delivered_at=reported_at)
        case "picked_up":
            return PickupCompleted(**ids, lines=lines, picked_up_at=reported_at, amounts=amounts)
        case "rejected":
            return FulfillmentRejected(**ids, reason=ReasonCode(code=update.reason or "REJECTED"), lines=unshipped,
                                       shipped=subtract_lines(lines, unshipped) or [])
    return FulfillmentOrderProgressed(**ids, status=update.status)


async def _record_shipment(uow: UnitOfWork, update: LocationUpdate, parcel: list[Line],
                           amounts: ShipmentAmounts | None) -> bool:
    """False when this parcel (its tracking number) was reported before."""
    return await uow.conn.fetchval(
        """INSERT INTO shipments (shipment_id, fulfillment_order_id, carrier, tracking_number, lines, amounts)
           VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT DO NOTHING RETURNING true""",
        shipment_id(update.fulfillment_order_id, update.tracking_number), update.fulfillment_order_id,
        update.carrier, update.tracking_number, [line.model_dump() for line in parcel],
        amounts.model_dump(mode="json") if amounts else None) or False


def _described(lines: list[Line] | None) -> str:
    return ", ".join(f"{line.quantity} {line.sku}" for line in lines or []) or "nothing"


async def expect_returns(uow: UnitOfWork, batch: list[Message[ExpectReturn]]) -> None:
    """An approved return: the location is told what to expect (once; asked again, nothing new)."""
    for message in batch:
        cmd = message.payload
        new = await uow.conn.fetchval(
            """INSERT INTO expected_returns (order_id, return_id, location_id, lines, correlation_id)
               VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING RETURNING true""",
            cmd.order_id, cmd.return_id, cmd.location_id, [line.model_dump() for line in cmd.lines],
            message.correlation_id)
        if new:
            uow.reply(ReturnExpected(order_id=cmd.order_id, return_id=cmd.return_id, location_id=cmd.location_id,
                                     lines=cmd.lines), message)


async def return_receipts(uow: UnitOfWork, batch: list[Message[ReturnReceipt]]) -> None:
    """What a location received of an expected return: once per return, at most what was expected, from the
    location it was sent to."""
    for message in batch:
        receipt = message.payload
        row = await uow.conn.fetchrow("SELECT * FROM expected_returns WHERE order_id = $1 AND return_id = $2 "
                                      "FOR UPDATE", receipt.order_id, receipt.return_id)
        if refusal := _return_refusal(receipt, row, message.sender):
            uow.refuse(message, *refusal)
            continue
        if row["status"] == "received":
            log.info("fulfillment.return_repeated", order_id=str(receipt.order_id),
                     event_id=str(message.envelope.id), trace_id=message.trace_id)
            continue
        await uow.conn.execute("UPDATE expected_returns SET status = 'received', received = $3, received_at = $4 "
                               "WHERE order_id = $1 AND return_id = $2", receipt.order_id, receipt.return_id,
                               [line.model_dump() for line in receipt.lines], message.envelope.time)
        uow.reply(ReturnReceived(order_id=receipt.order_id, return_id=receipt.return_id,
                                 location_id=row["location_id"], lines=receipt.lines,
                                 received_at=message.envelope.time), message, correlation_id=row["correlation_id"])


def _return_refusal(receipt: ReturnReceipt, row: asyncpg.Record | None, sender: str | None) -> tuple[str, str] | None:
    if row is None:
        return "UNKNOWN_RETURN", f"no return {receipt.return_id} expected for order {receipt.order_id}"
    if sender is not None and sender != row["location_id"]:
        return "LOCATION_MISMATCH", (f"location {sender} reported return {receipt.return_id}, which goes to "
                                     f"{row['location_id']}")
    received = merge_lines([Line(sku=line.sku, quantity=line.quantity) for line in receipt.lines])
    if subtract_lines([Line(**line) for line in row["lines"]], received) is None:
        return "OVER_RECEIVED", f"return {receipt.return_id}: received {_described(received)}, more than expected"
    return None


async def expire_uncollected(begin: Begin, interval: float = 1.0, batch: int = 100) -> None:
    """Background task: cancels pickup orders not collected within the hold period. The store puts the goods
    back (FulfillmentWithdrawn); the saga cancels the order (NOT_COLLECTED) and releases its stock. SKIP LOCKED
    lets several fulfillment instances share the work."""
    await run_in_batches("expire-uncollected", lambda: _expire_uncollected(begin, batch), batch, interval)


async def _expire_uncollected(begin: Begin, batch: int) -> int:
    async with begin() as uow:
        rows = await uow.conn.fetch(
            """UPDATE fulfillment_orders SET status = 'cancelled', reject_reason = 'NOT_COLLECTED', updated_at = now()
               WHERE fulfillment_order_id IN (
                   SELECT fulfillment_order_id FROM fulfillment_orders
                   WHERE status = 'ready_for_pickup' AND ready_at < now() - make_interval(secs => $1)
                   ORDER BY ready_at LIMIT $2 FOR UPDATE SKIP LOCKED)
               RETURNING fulfillment_order_id, order_id, location_id, ready_at, correlation_id""",
            uow.settings.pickup_hold_seconds, batch)
        for row in rows:
            ids = {"fulfillment_order_id": row["fulfillment_order_id"], "order_id": row["order_id"],
                   "location_id": row["location_id"]}
            log.info("fulfillment.pickup_expired", order_id=str(row["order_id"]), correlation_id=row["correlation_id"])
            uow.emit(FulfillmentWithdrawn(**ids), correlation_id=row["correlation_id"])
            uow.emit(PickupExpired(**ids, ready_since=row["ready_at"]), correlation_id=row["correlation_id"])
        return len(rows)


async def _set_status(uow: UnitOfWork, fo_id, status: str, update: LocationUpdate | None = None,
                      parcel: list[Line] | None = None) -> None:
    await uow.conn.execute(
        """UPDATE fulfillment_orders SET status = $2, carrier = coalesce($3, carrier),
             tracking_number = coalesce($4, tracking_number), reject_reason = coalesce($5, reject_reason),
             ready_at = CASE WHEN $2 = 'ready_for_pickup' THEN now() ELSE ready_at END,
             shipped_lines = CASE WHEN $6::jsonb IS NULL THEN shipped_lines ELSE shipped_lines || $6::jsonb END,
             updated_at = now()
           WHERE fulfillment_order_id = $1""",
        fo_id, status, update and update.carrier, update and update.tracking_number, update and update.reason,
        [line.model_dump() for line in parcel] if parcel else None,
    )


async def forget_orders(uow: UnitOfWork, batch: list[Message[OrderPurged]]) -> None:
    """Orders past their retention: their fulfilment orders, shipments and expected returns; an order with work
    still open at a location (a defect elsewhere: capture closed it) is kept whole, and logged."""
    still_open = await uow.conn.fetch(
        """WITH open AS (SELECT DISTINCT order_id FROM fulfillment_orders
                         WHERE order_id = ANY($1::uuid[]) AND status = ANY($2::text[])),
                gone AS (SELECT fulfillment_order_id FROM fulfillment_orders
                         WHERE order_id = ANY($1::uuid[]) AND order_id NOT IN (SELECT order_id FROM open)),
                parcels AS (DELETE FROM shipments s USING gone g WHERE s.fulfillment_order_id = g.fulfillment_order_id),
                returns AS (DELETE FROM expected_returns
                            WHERE order_id = ANY($1::uuid[]) AND order_id NOT IN (SELECT order_id FROM open)),
                orders AS (DELETE FROM fulfillment_orders f USING gone g
                           WHERE f.fulfillment_order_id = g.fulfillment_order_id)
           SELECT order_id FROM open""", purged_order_ids(batch), list(CANCELLABLE))
    for row in still_open:
        log.warning("fulfillment.purged_order_still_open", order_id=str(row["order_id"]))
