"""Fulfillment handlers: create and withdraw work for a location; turn its reports into ERP events."""

from datetime import UTC, datetime

import asyncpg

from shared.contracts.common import Line, ReasonCode
from shared.contracts.fulfillment import (
    CancelFulfillment,
    FulfillmentCancellationRefused,
    FulfillmentCancelled,
    FulfillmentOrderCreated,
    FulfillmentOrderProgressed,
    FulfillmentRejected,
    FulfillmentRequested,
    FulfillmentWithdrawn,
    LocationUpdate,
    RequestFulfillment,
    ShipmentConfirmed,
)
from shared.logging import get_logger
from shared.messaging.consumer import MessageContext, handles_batches

from .domain import OPEN, advances, fulfillment_order_id

log = get_logger(__name__)


@handles_batches
async def request_fulfillment(conn: asyncpg.Connection, batch: list[MessageContext]) -> None:
    """Create the batch's fulfilment orders in one statement; a repeated request finds its existing one."""
    requests = [(ctx, fulfillment_order_id(ctx.payload.order_id, ctx.payload.location_id)) for ctx in batch]
    created = await conn.fetch(
        """INSERT INTO fulfillment_orders (fulfillment_order_id, order_id, location_id, status, lines, delivery,
                                          correlation_id)
           SELECT f.fulfillment_order_id, f.order_id, f.location_id, 'requested', f.lines, f.delivery,
                  f.correlation_id
           FROM jsonb_to_recordset($1::jsonb) AS f(fulfillment_order_id uuid, order_id uuid, location_id text,
                                                  lines jsonb, delivery jsonb, correlation_id text)
           ON CONFLICT DO NOTHING RETURNING fulfillment_order_id""",
        [{"fulfillment_order_id": str(fo_id), "order_id": str(ctx.payload.order_id),
          "location_id": ctx.payload.location_id, "lines": [line.model_dump() for line in ctx.payload.lines],
          "delivery": ctx.payload.delivery.model_dump(mode="json"), "correlation_id": ctx.correlation_id}
         for ctx, fo_id in requests],
    )
    new = {r["fulfillment_order_id"] for r in created}
    for ctx, fo_id in requests:
        cmd: RequestFulfillment = ctx.payload
        if fo_id in new:
            new.discard(fo_id)
            ctx.emit(FulfillmentRequested(fulfillment_order_id=fo_id, order_id=cmd.order_id,
                                          location_id=cmd.location_id, lines=cmd.lines, delivery=cmd.delivery))
        ctx.emit(FulfillmentOrderCreated(fulfillment_order_id=fo_id, order_id=cmd.order_id,
                                         location_id=cmd.location_id, lines=cmd.lines))


async def cancel_fulfillment(ctx: MessageContext, cmd: CancelFulfillment) -> None:
    ids = {"order_id": cmd.order_id, "location_id": cmd.location_id,
           "fulfillment_order_id": fulfillment_order_id(cmd.order_id, cmd.location_id)}
    row = await ctx.conn.fetchrow("SELECT status FROM fulfillment_orders WHERE fulfillment_order_id = $1 FOR UPDATE",
                                  ids["fulfillment_order_id"])
    if row is not None and row["status"] == "shipped":
        ctx.emit(FulfillmentCancellationRefused(**ids, reason=ReasonCode(code="ALREADY_SHIPPED")))
        return
    if row is not None and row["status"] in OPEN:
        await _set_status(ctx, ids["fulfillment_order_id"], "cancelled")
        ctx.emit(FulfillmentWithdrawn(**ids))
    ctx.emit(FulfillmentCancelled(**ids, existed=row is not None))


async def location_update(ctx: MessageContext, update: LocationUpdate) -> None:
    row = await ctx.conn.fetchrow(
        "SELECT * FROM fulfillment_orders WHERE fulfillment_order_id = $1 FOR UPDATE", update.fulfillment_order_id
    )
    if row is None or row["order_id"] != update.order_id:
        raise LookupError(f"unknown fulfillment order {update.fulfillment_order_id} for order {update.order_id}")
    if not advances(row["status"], update.status):
        log.info("fulfillment.update_ignored", current=row["status"], reported=update.status)
        return
    await _set_status(ctx, update.fulfillment_order_id, update.status, update)
    ids = {"fulfillment_order_id": update.fulfillment_order_id, "order_id": update.order_id,
           "location_id": row["location_id"]}
    correlation_id = row["correlation_id"]
    if update.status == "shipped":
        ctx.emit(ShipmentConfirmed(**ids, lines=[Line(**line) for line in row["lines"]], carrier=update.carrier,
                                   tracking_number=update.tracking_number, shipped_at=datetime.now(UTC)),
                 correlation_id=correlation_id)
    elif update.status == "rejected":
        ctx.emit(FulfillmentRejected(**ids, reason=ReasonCode(code=update.reason or "REJECTED")),
                 correlation_id=correlation_id)
    else:
        ctx.emit(FulfillmentOrderProgressed(**ids, status=update.status), correlation_id=correlation_id)


async def _set_status(ctx: MessageContext, fo_id, status: str, update: LocationUpdate | None = None) -> None:
    await ctx.conn.execute(
        """UPDATE fulfillment_orders SET status = $2, carrier = coalesce($3, carrier),
             tracking_number = coalesce($4, tracking_number), reject_reason = coalesce($5, reject_reason),
             updated_at = now()
           WHERE fulfillment_order_id = $1""",
        fo_id, status, update and update.carrier, update and update.tracking_number, update and update.reason,
    )
