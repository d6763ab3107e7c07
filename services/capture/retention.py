"""Order retention: an order closed (delivered, collected, shipped or cancelled, no return open) for longer than
OMS_ORDER_RETENTION_DAYS is deleted with everything capture keeps of it, and announced as OrderPurged in the same
transaction, on which every other service deletes its own records of it. This bounds what each schema grows by
per order. Never before the longest return window of the returns policy has passed: a retention set shorter is
stretched to it (and said so at start)."""

from shared.contracts.orders import OrderPurged
from shared.logging import get_logger
from shared.messaging.retry import run_in_batches
from shared.messaging.unit_of_work import Begin
from shared.settings import Settings, settings

from . import store
from .returns import return_policy

log = get_logger(__name__)

BATCH = 500


def retention_days(config: Settings) -> float:
    longest_window = return_policy(config.return_policy).longest_window_days
    return max(config.order_retention_days, longest_window)


async def purge_closed_orders(begin: Begin) -> None:
    """Background task: purge what is past its retention, a batch per transaction; SKIP LOCKED lets several
    capture instances share the work."""
    config = settings()
    if retention_days(config) > config.order_retention_days:
        log.warning("orders.retention_stretched", retention_days=config.order_retention_days,
                    kept_days=retention_days(config), why="the returns policy's longest window")
    await run_in_batches("order-retention", lambda: purge_once(begin), BATCH, config.order_purge_interval_seconds)


async def purge_once(begin: Begin, batch: int = BATCH) -> int:
    async with begin() as uow:
        purged = await store.purge_closed(uow.conn, retention_days(uow.settings), batch)
        for order in purged:
            uow.emit(OrderPurged(order_id=order.order_id, closed_as=order.closed_as, closed_at=order.closed_at),
                     correlation_id=order.correlation_id)
    if purged:
        log.info("orders.purged", orders=len(purged), oldest_closed_at=min(o.closed_at for o in purged).isoformat())
    return len(purged)
