"""Returns, five processes and a payment stand-in: a return is approved for shipped units within the window and
expected at the location that shipped them; what arrives is restocked or written off and refunded once, only
the returned units; several returns never take back more than shipped, and refund the line to the cent (and
shipping with the last unit)."""

from decimal import Decimal

import pytest

from ops.waiting import eventually
from shared.contracts.fulfillment import (
    FulfillmentRequested,
    LocationUpdate,
    ReturnedLine,
    ReturnExpected,
    ReturnReceipt,
    ReturnReceived,
)
from shared.contracts.orders import PricedLine, RequestReturn, ReturnApproved, ReturnRefunded, ReturnRefused
from shared.contracts.payments import Authorization

from ..support.topics import of_type
from .conftest import FRANKFURT, Driver

pytestmark = pytest.mark.e2e
D = Decimal


async def shipped_order(driver: Driver, sku: str, location: str):
    line = PricedLine(sku=sku, quantity=3, unit_price=D("19.99"), discount=D("3.00"), tax=D("10.82"))
    order = driver.order([(sku, 3)]).model_copy(update={"lines": [line], "shipping": D("4.90")})
    order = order.model_copy(update={"payment": Authorization(provider="psp", reference="auth-r",
                                                              amount=order.computed_totals().total)})
    order_id = driver.order_id(order)
    await driver.channel.send(order)
    [work] = await driver.work.wait_for(of_type(FulfillmentRequested, order_id))
    await driver.channel.send(LocationUpdate(fulfillment_order_id=work["data"]["fulfillment_order_id"],
                                             order_id=order_id, status="shipped", carrier="DHL",
                                             tracking_number="RT1"))
    await driver.status(order_id, "shipped")
    return order, order_id


def returning(order, return_id: str, quantity: int, sku: str | None = None) -> RequestReturn:
    return RequestReturn(channel=order.channel, channel_order_id=order.channel_order_id, return_id=return_id,
                         lines=[{"sku": sku or order.lines[0].sku, "quantity": quantity, "reason": "TOO_SMALL"}])


async def on_hand(driver: Driver, sku: str, location: str) -> int:
    return await driver.count("SELECT on_hand FROM inventory.location_stock WHERE sku = $1 AND location_id = $2",
                              sku, location)


async def test_partial_returns_restock_or_write_off_only_what_came_back_and_refund_it_once(driver, payments):
    location, sku = driver.unique("WH"), driver.unique("SKU")
    await driver.location(location, FRANKFURT)
    await driver.stock(sku, location, 5)
    order, order_id = await shipped_order(driver, sku, location)

    await driver.channel.send(returning(order, "R1", 2))
    [approved] = await driver.orders.wait_for(of_type(ReturnApproved, order_id))
    assert approved["data"]["return_to"] == location
    [expected] = await driver.work.wait_for(of_type(ReturnExpected, order_id))
    assert expected["data"]["lines"] == [{"sku": sku, "quantity": 2}]
    receipt = ReturnReceipt(order_id=order_id, return_id="R1", lines=[
        ReturnedLine(sku=sku, quantity=1, condition="restock"), ReturnedLine(sku=sku, quantity=1, condition="dispose")])
    await driver.channel.send(receipt)
    await driver.channel.send(receipt.model_copy())  # reported twice: one receipt, one refund
    [refunded] = await driver.orders.wait_for(of_type(ReturnRefunded, order_id))
    assert (refunded["data"]["restocked"], refunded["data"]["disposed"]) == (
        [{"sku": sku, "quantity": 1}], [{"sku": sku, "quantity": 1}])
    await eventually(lambda: _is(on_hand(driver, sku, location), 3), what="the restocked unit back on hand")

    await driver.channel.send(returning(order, "R2", 2))  # one unit is left to return, not two
    [refused] = await driver.orders.wait_for(of_type(ReturnRefused, order_id))
    assert refused["data"]["reason"]["code"] == "NOTHING_TO_RETURN"
    await driver.channel.send(returning(order, "R3", 1))
    await driver.orders.wait_for(of_type(ReturnApproved, order_id), count=2)
    await driver.channel.send(ReturnReceipt(order_id=order_id, return_id="R3",
                                            lines=[ReturnedLine(sku=sku, quantity=1, condition="restock")]))
    refunds = await driver.orders.wait_for(of_type(ReturnRefunded, order_id), count=2)
    assert [D(r["data"]["refund"]["shipping"]) for r in refunds] == [0, D("4.90")]  # with the last unit back
    assert sum(D(r["data"]["refund"]["total"]) for r in refunds) == D("59.97") - D("3.00") + D("10.82") + D("4.90")

    async def paid_back():
        rows = await driver.db.fetch("SELECT refunded FROM capture.returns WHERE order_id = $1 AND refunded IS NOT "
                                     "NULL", order_id)
        return rows if len(rows) == 2 else None

    assert sum(r["refunded"] for r in await eventually(paid_back, what="both refunds paid")) == D("72.69")
    assert len(driver.erp.envelopes(of_type(ReturnReceived, order_id))) == 2
    assert await on_hand(driver, sku, location) == 4
    await eventually(lambda: driver.count("SELECT count(*) = 4 FROM notification.notifications WHERE order_id = $1 "
                                          "AND kind IN ('return_approved', 'return_refunded')", order_id),
                     what="the customer told of each return's approval and refund")


async def test_a_return_outside_its_window_is_refused(driver):
    location, sku = driver.unique("WH"), driver.unique("FINAL-SALE")  # the policy: final sale, no returns
    await driver.location(location, FRANKFURT)
    await driver.stock(sku, location, 5)
    order, order_id = await shipped_order(driver, sku, location)
    await driver.channel.send(returning(order, "R1", 1))
    [refused] = await driver.orders.wait_for(of_type(ReturnRefused, order_id))
    assert refused["data"]["reason"]["code"] == "OUTSIDE_RETURN_WINDOW"


async def _is(value, expected) -> bool:
    return await value == expected


@pytest.mark.parametrize(("replacement_price", "charged"), [
    (D("25.00"), True),  # the replacement costs more: only the difference is charged
    (D("10.00"), False),  # it costs less: only the difference is refunded
])
async def test_an_exchange_reserves_the_replacement_at_once_and_settles_only_the_price_difference(
        driver, payments, replacement_price, charged):
    location, sku, other = driver.unique("WH"), driver.unique("SKU"), driver.unique("SKU-X")
    await driver.location(location, FRANKFURT)
    await driver.stock(sku, location, 5)
    await driver.stock(other, location, 5)
    order, order_id = await shipped_order(driver, sku, location)
    exchange = returning(order, "X1", 1).model_copy(update={"exchange": [
        PricedLine(sku=other, quantity=1, unit_price=replacement_price)]})
    await driver.channel.send(exchange)
    [approved] = await driver.orders.wait_for(of_type(ReturnApproved, order_id))
    replacement = approved["data"]["exchange_order_id"]
    [work] = await driver.work.wait_for(of_type(FulfillmentRequested, replacement))  # reserved before it returns
    assert work["data"]["lines"] == [{"sku": other, "quantity": 1}]

    await driver.channel.send(ReturnReceipt(order_id=order_id, return_id="X1",
                                            lines=[ReturnedLine(sku=sku, quantity=1, condition="restock")]))
    [settled] = await driver.orders.wait_for(of_type(ReturnRefunded, order_id))
    returned = D(settled["data"]["refund"]["total"])  # one of three units: 19.99 - 1.00 + 3.61
    assert returned == D("22.60")
    difference = D(settled["data"]["price_difference"])
    assert difference == replacement_price - returned
    captured = "SELECT c->>1 AS amount FROM capture.order_sagas, jsonb_array_elements(captures) c WHERE order_id = $1"
    refunds = "SELECT refunded AS amount FROM capture.returns WHERE order_id = $1 AND refunded IS NOT NULL"

    async def settled_by(sql: str, count: int):
        rows = await driver.db.fetch(sql, order_id)
        return [D(str(r["amount"])) for r in rows] if len(rows) >= count else None

    if charged:  # the shipment's capture, then the difference's
        assert abs(difference) in await eventually(lambda: settled_by(captured, 2), what="the difference charged")
    else:
        assert await eventually(lambda: settled_by(refunds, 1), what="the difference refunded") == [abs(difference)]
