"""The acknowledgement deadline of dropship purchase orders: a vendor that has not acknowledged (nor rejected) a
purchase order within OMS_DROPSHIP_ACK_SECONDS is taken to have rejected it."""

from shared.contracts.common import ReasonCode
from shared.contracts.fulfillment import FulfillmentRejected, PurchaseOrderCancelled
from shared.logging import get_logger
from shared.messaging.retry import run_in_batches
from shared.messaging.unit_of_work import Begin

log = get_logger(__name__)


async def withdraw_unacknowledged(begin: Begin, interval: float = 1.0, batch: int = 100) -> None:
    """Background task: the vendor is told its purchase order is cancelled and the saga hears a rejection
    (NOT_ACKNOWLEDGED), so it goes elsewhere like any rejected work; a late acknowledgement changes nothing.
    SKIP LOCKED lets several fulfillment instances share the work."""
    await run_in_batches("withdraw-unacknowledged", lambda: _withdraw_unacknowledged(begin, batch), batch, interval)


async def _withdraw_unacknowledged(begin: Begin, batch: int) -> int:
    async with begin() as uow:
        rows = await uow.conn.fetch(
            """UPDATE fulfillment_orders SET status = 'rejected', reject_reason = 'NOT_ACKNOWLEDGED', updated_at = now()
               WHERE fulfillment_order_id IN (
                   SELECT fulfillment_order_id FROM fulfillment_orders
                   WHERE status = 'requested' AND purchase_order IS NOT NULL
                     AND created_at < now() - make_interval(secs => $1)
                   ORDER BY created_at LIMIT $2 FOR UPDATE SKIP LOCKED)
               RETURNING fulfillment_order_id, order_id, location_id, lines, purchase_order, correlation_id""",
            uow.settings.dropship_ack_seconds, batch)
        for row in rows:
            ids = {"fulfillment_order_id": row["fulfillment_order_id"], "order_id": row["order_id"],
                   "location_id": row["location_id"]}
            log.info("fulfillment.purchase_order_unacknowledged", order_id=str(row["order_id"]),
                     correlation_id=row["correlation_id"])
            uow.emit(PurchaseOrderCancelled(**ids, purchase_order_number=row["purchase_order"]),
                     correlation_id=row["correlation_id"])
            uow.emit(FulfillmentRejected(**ids, reason=ReasonCode(code="NOT_ACKNOWLEDGED"), lines=row["lines"]),
                     correlation_id=row["correlation_id"])
        return len(rows)
