"""Payments and holds, five processes and a payment service stand-in: each shipment is captured (per parcel),
what is left of the authorisation voided on cancellation; a held order is reserved but not released to
fulfilment until released; a failed capture holds what is not yet released."""

from datetime import date
from decimal import Decimal

import pytest

from ops.waiting import eventually
from shared.contracts.common import Line
from shared.contracts.fulfillment import FulfillmentRequested, LocationUpdate
from shared.contracts.inventory import ExpectReceipt, ReceiveStock
from shared.contracts.orders import (
    CancelOrder,
    Hold,
    HoldOrder,
    OrderBackordered,
    OrderCancelled,
    OrderConfirmed,
    OrderHeld,
    OrderHoldReleased,
    ReleaseHold,
)
from shared.contracts.payments import Authorization

from ..support.topics import of_type
from .conftest import BERLIN, FRANKFURT, Driver

pytestmark = pytest.mark.e2e
D = Decimal


def paid(driver: Driver, lines: list[tuple[str, int]], reference: str = "auth-1", **changes):
    order = driver.order(lines)
    total = order.computed_totals().total
    return order.model_copy(update={"payment": Authorization(provider="psp", reference=reference, amount=total),
                                    **changes})


async def captures(driver: Driver, order_id, count: int) -> list:
    async def recorded():
        rows = await driver.db.fetch("SELECT c->>0 AS capture_id, c->>1 AS amount FROM capture.order_sagas, "
                                     "jsonb_array_elements(captures) c WHERE order_id = $1", order_id)
        return [(r["capture_id"], r["amount"]) for r in rows] if len(rows) >= count else None

    return await eventually(recorded, what=f"{count} captures recorded")


async def test_each_parcel_is_captured_and_a_cancelled_order_voids_its_authorisation(driver, payments):
    sku = await driver.stocked_sku(10)
    order = paid(driver, [(sku, 3)])
    order_id = driver.order_id(order)
    await driver.channel.send(order)
    [work] = await driver.work.wait_for(of_type(FulfillmentRequested, order_id))
    ids = {"fulfillment_order_id": work["data"]["fulfillment_order_id"], "order_id": order_id}
    await driver.channel.send(LocationUpdate(**ids, status="shipped", carrier="DHL", tracking_number="C1",
                                             lines=[Line(sku=sku, quantity=1)]))
    await driver.channel.send(LocationUpdate(**ids, status="shipped", carrier="DHL", tracking_number="C2"))
    recorded = await captures(driver, order_id, 2)
    assert sum(D(amount) for _, amount in recorded) == order.computed_totals().total
    assert len(recorded) == 2 and {capture_id for capture_id, _ in recorded} <= set(payments.captured)

    cancelled = paid(driver, [(sku, 1)], reference="auth-2")
    cancelled_id = driver.order_id(cancelled)
    await driver.channel.send(cancelled)
    await driver.orders.wait_for(of_type(OrderConfirmed, cancelled_id))
    await driver.channel.send(CancelOrder(channel=cancelled.channel, channel_order_id=cancelled.channel_order_id))
    await driver.orders.wait_for(of_type(OrderCancelled, cancelled_id))
    await eventually(lambda: driver.count("SELECT count(*) FROM capture.order_sagas WHERE order_id = $1 AND voided",
                                          cancelled_id), what="the authorisation voided")


async def test_a_held_order_is_reserved_but_not_released_to_fulfilment_until_released(driver):
    location, sku = driver.unique("WH"), driver.unique("PRE")
    await driver.location(location, FRANKFURT)
    await driver.channel.send(ExpectReceipt(receipt_id=driver.unique("PO"), sku=sku, location_id=location,
                                            quantity=1, expected_on=date(2027, 3, 1)))
    order = driver.order([(sku, 1)]).model_copy(update={"allow_backorder": True})
    order_id = driver.order_id(order)
    await driver.channel.send(order)
    await driver.orders.wait_for(of_type(OrderBackordered, order_id))
    keys = {"channel": order.channel, "channel_order_id": order.channel_order_id}
    await driver.channel.send(HoldOrder(**keys, hold=Hold(reason="address_check", placed_by="agent-7")))
    await driver.orders.wait_for(of_type(OrderHeld, order_id))

    await driver.channel.send(ReceiveStock(receipt_id=driver.unique("R"), sku=sku, location_id=location, quantity=1))
    assert await driver.status(order_id, "on_hold") == "on_hold"
    assert await driver.count("SELECT allocated FROM inventory.location_stock WHERE sku = $1", sku) == 1
    assert not driver.work.envelopes(of_type(FulfillmentRequested, order_id))

    await driver.channel.send(ReleaseHold(**keys, reason="address_check", released_by="agent-7"))
    [released] = await driver.orders.wait_for(of_type(OrderHoldReleased, order_id))
    assert released["data"]["released_by"] == "agent-7"
    await driver.work.wait_for(of_type(FulfillmentRequested, order_id))
    await driver.status(order_id, "confirmed")


async def test_a_failed_capture_holds_what_is_not_yet_released(driver, payments):
    near, far, sku = driver.unique("WH-NEAR"), driver.unique("WH-FAR"), driver.unique("SKU")
    await driver.location(near, FRANKFURT)
    await driver.location(far, BERLIN)
    await driver.stock(sku, near, 5)
    await driver.stock(sku, far, 5)
    order = paid(driver, [(sku, 3)], reference="decline-1")
    order_id = driver.order_id(order)
    await driver.channel.send(order)
    [work] = await driver.work.wait_for(of_type(FulfillmentRequested, order_id))
    ids = {"fulfillment_order_id": work["data"]["fulfillment_order_id"], "order_id": order_id}
    await driver.channel.send(LocationUpdate(**ids, status="shipped", carrier="DHL", tracking_number="D1",
                                             lines=[Line(sku=sku, quantity=1)]))
    [held] = await driver.orders.wait_for(of_type(OrderHeld, order_id))
    assert held["data"]["hold"]["reason"] == "payment_capture_failed"
    await driver.channel.send(LocationUpdate(**ids, status="rejected", reason="SHORT_PICK"))  # the rest moves...

    async def held_again():
        return await driver.db.fetchval("SELECT state FROM capture.order_sagas WHERE order_id = $1",
                                        order_id) == "held"

    await eventually(held_again, what="the rest pinned elsewhere and held")  # ...but is not released
    assert len(driver.work.envelopes(of_type(FulfillmentRequested, order_id))) == 1
    await driver.channel.send(ReleaseHold(channel=order.channel, channel_order_id=order.channel_order_id,
                                          reason="payment_capture_failed", released_by="payments-desk"))
    await driver.work.wait_for(of_type(FulfillmentRequested, order_id), count=2)
