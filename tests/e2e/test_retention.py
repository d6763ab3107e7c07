"""Order retention: an order closed for longer than its retention is deleted by capture and, on its OrderPurged,
by every other service, and its history leaves the compacted history topic; an order closed more recently stays.
Time is moved by dating the closed sagas back (the purge runs every half second in this session)."""

import asyncio
import uuid
from datetime import UTC, datetime, timedelta

import pytest

from ops import cli, invariants
from ops.waiting import eventually
from shared.contracts.fulfillment import FulfillmentRequested, LocationUpdate
from shared.contracts.base import wrap
from shared.contracts.orders import (
    CancelOrder,
    OrderCancellationRejected,
    OrderDelivered,
    OrderPurged,
    OrderRejected,
    RequestReturn,
    ReturnApproved,
)
from shared.contracts.topics import ORDER_PURGES, TRACKING_ORDER_HISTORY

from ..support.topics import TopicWatcher, of_type
from .conftest import Driver

pytestmark = pytest.mark.e2e

# Where each service keeps an order: (table, column naming the order).
ORDER_ROWS = [("capture.orders", "order_id"), ("capture.order_sagas", "order_id"),
              ("capture.order_timeline", "order_id"), ("inventory.reservations", "order_id"),
              ("routing.decisions", "order_id"), ("routing.capacity_claims", "order_id"),
              ("fulfillment.fulfillment_orders", "order_id"), ("notification.recipients", "order_id"),
              ("notification.notifications", "order_id"), ("notification.deliveries", "order_id"),
              ("tracking.events", "order_id"), ("tracking.orders", "order_id")]


async def test_an_order_past_its_retention_is_forgotten_everywhere_and_a_recent_one_kept(driver, kcat):
    (old, old_order, old_location), (recent, *_), (returning, order, _) = [await delivered_order(driver)
                                                                            for _ in range(3)]
    await driver.channel.send(RequestReturn(channel=order.channel, channel_order_id=order.channel_order_id,
                                            return_id="RMA-1", lines=[{"sku": order.lines[0].sku, "quantity": 1,
                                                                       "reason": "TOO_SMALL"}]))
    await driver.orders.wait_for(of_type(ReturnApproved, returning))
    for order_id in (old, recent):
        await history_published(driver, order_id)
    assert await rows_of(driver, old) == {table: True for table, _ in ORDER_ROWS}

    async with TopicWatcher(driver.config, ORDER_PURGES) as purges:
        await closed_ago(driver, recent, timedelta(days=20))  # inside the returns policy's 30-day window
        await closed_ago(driver, returning, timedelta(days=400))  # its return is still on its way back
        await driver.db.execute("UPDATE capture.returns SET approved_at = now() - interval '400 days' "
                                "WHERE order_id = $1", returning)
        await closed_ago(driver, old, timedelta(days=400))  # past the default retention of 365 days
        [purged] = await purges.wait_for(of_type(OrderPurged, old))
    assert purged["data"]["closed_as"] == "delivered"

    await eventually(lambda: _forgotten(driver, old), what="every service to forget the order", timeout=30)
    async with driver.db.acquire() as conn:
        report = await invariants.check(conn)
    sku, location = old_order.lines[0].sku, old_location
    assert not [v for v in report.violations if sku in v or location in v]  # its stock and capacity still add up
    for kept in (recent, returning):
        assert await rows_of(driver, kept) == {table: True for table, _ in ORDER_ROWS}
        assert not purges.envelopes(of_type(OrderPurged, kept))

    async def tombstoned():
        return await asyncio.to_thread(last_history_record, kcat, driver, old) == -1  # no value: a tombstone

    await eventually(tombstoned, what="the history topic's last record of the order to be a tombstone")
    assert await asyncio.to_thread(last_history_record, kcat, driver, recent) > 0
    erp_reads = await asyncio.to_thread(kcat.run, driver.config, "-C", "-t", driver.config.topic(ORDER_PURGES),
                                        "-o", "beginning", "-e", "-q", "-f", "%k\n", principal="erp",
                                        capture_output=True, timeout=30, check=True)
    assert str(old).encode() in erp_reads.stdout.split(b"\n")  # bytes: other tests write garbage to every topic


async def test_an_order_purged_with_work_still_open_keeps_its_work_and_its_units(driver):
    """A defect elsewhere (capture closed an order whose location still works on it): fulfillment keeps the work
    and inventory the units, rather than lose track of them."""
    sku = await driver.stocked_sku(1)
    order = driver.order([(sku, 1)])
    order_id = driver.order_id(order)
    async with TopicWatcher(driver.config, ORDER_PURGES) as purges:
        await driver.channel.send(order)
        await driver.work.wait_for(of_type(FulfillmentRequested, order_id))
        await driver.status(order_id, "confirmed")
        await driver.db.execute("UPDATE capture.order_sagas SET state = 'cancelled' WHERE order_id = $1", order_id)
        await closed_ago(driver, order_id, timedelta(days=400))  # apart: a change of state sets state_since
        [purged] = await purges.wait_for(of_type(OrderPurged, order_id))
    for service in ("fulfillment", "inventory"):
        await eventually(lambda: driver.count(f"SELECT EXISTS (SELECT FROM {service}.inbox WHERE message_key = $1)",
                                              purged["id"]), what=f"{service} to read the OrderPurged")
    assert await driver.count("SELECT status FROM fulfillment.fulfillment_orders WHERE order_id = $1",
                              order_id) == "requested"
    assert await driver.count("SELECT status FROM inventory.reservations WHERE order_id = $1", order_id) == "allocated"


async def delivered_order(driver: Driver):
    sku = await driver.stocked_sku(1)
    order = driver.order([(sku, 1)])
    order_id = driver.order_id(order)
    await driver.channel.send(order)
    [work] = await driver.work.wait_for(of_type(FulfillmentRequested, order_id))
    ids = {"fulfillment_order_id": work["data"]["fulfillment_order_id"], "order_id": order_id}
    await driver.channel.send(LocationUpdate(**ids, status="shipped", carrier="DHL", tracking_number="R1"))
    await driver.channel.send(LocationUpdate(**ids, status="delivered"))
    await driver.orders.wait_for(of_type(OrderDelivered, order_id))
    return order_id, order, work["data"]["location_id"]


async def history_published(driver: Driver, order_id) -> None:
    """The read model holds the delivery, and the order's history since then is on the history topic."""
    async def published():
        return await driver.count("""SELECT (SELECT count(*) FROM tracking.events
                                             WHERE order_id = $1 AND type = 'OrderDelivered')
                                          - (SELECT count(*) FROM tracking.history_due WHERE order_id = $1)""",
                                  order_id) == 1

    await eventually(published, what=f"the history of {order_id} published", timeout=60)


async def test_a_purged_order_sent_again_is_refused_and_a_known_one_is_a_duplicate(driver, capsys):
    """A channel's topic replayed from its start (or a retry sent a year on), or the order written afresh, brings
    back the PlaceOrder of an order capture has purged: without its row, capture would place, and ship, it again."""
    (purged, purged_order, _), (kept, kept_order, _) = [await delivered_order(driver) for _ in range(2)]
    async with TopicWatcher(driver.config, ORDER_PURGES) as purges:
        await closed_ago(driver, purged, timedelta(days=400))
        await purges.wait_for(of_type(OrderPurged, purged))
    await eventually(lambda: _forgotten(driver, purged), what="every service to forget the order", timeout=30)

    a_year_ago = datetime.now(UTC) - timedelta(days=400)
    for order in (purged_order, kept_order):
        replayed = wrap(order, source="channel/web", correlation_id=str(uuid.uuid4())).model_copy(
            update={"time": a_year_ago})
        await driver.channel.send_raw(order.topic, replayed.model_dump_json().encode(), order.key())
    [rejected] = await driver.orders.wait_for(of_type(OrderRejected, purged_order.key()))
    [reason] = rejected["data"]["reasons"]
    assert reason["code"] == "ORDER_TOO_OLD" and a_year_ago.date().isoformat() in reason["detail"]
    duplicate = """SELECT EXISTS (SELECT FROM capture.order_timeline WHERE order_id = $1
                                  AND message_type = 'duplicate oms.capture.PlaceOrder.v1')"""
    await eventually(lambda: driver.count(duplicate, kept), what="the known order's replay taken for a duplicate")
    assert not driver.orders.envelopes(of_type(OrderRejected, kept_order.key()))

    await driver.channel.send(purged_order)  # written afresh: a new envelope, sent now
    await eventually(lambda: len(driver.orders.envelopes(of_type(OrderRejected, purged_order.key()))) == 2,
                     what="the resend refused")
    resent = driver.orders.envelopes(of_type(OrderRejected, purged_order.key()))[-1]
    [reason] = resent["data"]["reasons"]
    assert reason["code"] == "ORDER_PURGED"
    assert not await driver.count("SELECT EXISTS (SELECT FROM capture.orders WHERE order_id = $1)", purged)
    await driver.channel.send(CancelOrder(channel=purged_order.channel, channel_order_id=purged_order.channel_order_id))
    [cancel_refused] = await driver.orders.wait_for(of_type(OrderCancellationRejected, purged))
    assert cancel_refused["data"]["reason"]["code"] == "ORDER_PURGED"
    capsys.readouterr()
    assert await cli.show_order(purged_order.key()) == 1
    assert f"order {purged_order.key()} was purged" in capsys.readouterr().out


async def closed_ago(driver: Driver, order_id, ago: timedelta) -> None:
    await driver.db.execute("UPDATE capture.order_sagas SET state_since = now() - $2::interval WHERE order_id = $1",
                            order_id, ago)


async def rows_of(driver: Driver, order_id) -> dict[str, bool]:
    return {table: await driver.count(f"SELECT EXISTS (SELECT FROM {table} WHERE {column} = $1)", order_id)
            for table, column in ORDER_ROWS}


async def _forgotten(driver: Driver, order_id) -> bool:
    return not any((await rows_of(driver, order_id)).values())


def last_history_record(kcat, driver: Driver, order_id) -> int | None:
    """The size of the last record of the order on the history topic as kcat reads it (-1: no value), or None."""
    read = kcat.run(driver.config, "-C", "-t", driver.config.topic(TRACKING_ORDER_HISTORY), "-o", "beginning", "-e",
                    "-q", "-f", "%k %S\n", capture_output=True, timeout=30, check=True)
    key = f"{order_id} ".encode()
    sizes = [int(line.removeprefix(key)) for line in read.stdout.split(b"\n") if line.startswith(key)]
    return sizes[-1] if sizes else None
