"""Money through five processes: an order whose totals disagree with ours is refused with a reason the channel
can read; the ERP can post every shipment without asking back — channel and order, currency, per line price,
discount, tax and net, shipping once, the time the location reported — and an order's shipments add up to its
total to the cent, however it splits."""

from decimal import Decimal

import pytest

from shared.contracts.common import Line
from shared.contracts.fulfillment import FulfillmentRequested, LocationUpdate, ShipmentConfirmed
from shared.contracts.money import OrderTotals
from shared.contracts.orders import OrderAccepted, OrderRejected, PricedLine

from ..support.topics import of_type
from .conftest import BERLIN, FRANKFURT

pytestmark = pytest.mark.e2e
D = Decimal


async def test_an_order_whose_totals_disagree_with_ours_is_refused_with_the_difference(driver):
    sku = await driver.stocked_sku(5)
    order = driver.order([(sku, 2)]).model_copy(update={"totals": OrderTotals(
        goods=D("39.98"), discount=D(0), shipping=D(0), tax=D(0), total=D("38.98"))})
    order_id = driver.order_id(order)
    await driver.channel.send(order)
    [rejected] = await driver.orders.wait_for(of_type(OrderRejected, order.key()))
    [reason] = rejected["data"]["reasons"]
    assert reason["code"] == "TOTALS_MISMATCH" and "total 38.98 (ours 39.98)" in reason["detail"]
    assert await driver.count("SELECT count(*) FROM capture.orders WHERE order_id = $1", order_id) == 0


async def test_shipments_carry_what_the_erp_posts_and_add_up_to_the_order_total(driver):
    near, far = driver.unique("WH-NEAR"), driver.unique("WH-FAR")
    await driver.location(near, FRANKFURT)
    await driver.location(far, BERLIN)
    sku_a, sku_b = driver.unique("SKU-A"), driver.unique("SKU-B")
    await driver.stock(sku_a, near, 5)
    await driver.stock(sku_b, far, 5)
    lines = [PricedLine(sku=sku_a, quantity=3, unit_price=D("19.99"), discount=D("3.00"), tax=D("10.82")),
             PricedLine(sku=sku_b, quantity=1, unit_price=D("35.00"), tax=D("6.65"))]
    order = driver.order([(sku_a, 3)]).model_copy(update={
        "lines": lines, "currency": "CHF", "shipping": D("7.50"), "shipping_tax": D("0.58")})
    order = type(order).model_validate(order.model_dump())
    order_id = driver.order_id(order)
    await driver.channel.send(order)
    [accepted] = await driver.orders.wait_for(of_type(OrderAccepted, order_id))
    total = D(accepted["data"]["totals"]["total"])
    assert total == D("59.97") - D("3.00") + D("35.00") + D("7.50") + D("10.82") + D("6.65") + D("0.58")

    works = {w["data"]["location_id"]: w for w in await driver.work.wait_for(of_type(FulfillmentRequested, order_id),
                                                                             count=2)}
    sent = []
    for location, parcels in ((near, [[Line(sku=sku_a, quantity=1)], [Line(sku=sku_a, quantity=2)]]),
                              (far, [[Line(sku=sku_b, quantity=1)]])):
        ids = {"fulfillment_order_id": works[location]["data"]["fulfillment_order_id"], "order_id": order_id}
        for n, parcel in enumerate(parcels):
            sent.append(await driver.channel.send(LocationUpdate(**ids, status="shipped", carrier="DHL",
                                                                 tracking_number=f"{location}-{n}", lines=parcel)))
    shipments = await driver.erp.wait_for(of_type(ShipmentConfirmed, order_id), count=3)

    amounts = [s["data"]["amounts"] for s in shipments]
    assert sum(D(a["total"]) for a in amounts) == total
    assert [D(a["shipping"]) for a in amounts] == [D("7.50"), D(0), D(0)]
    assert sum(D(line["discount"]) for a in amounts for line in a["lines"]) == D("3.00")
    assert sum(D(a["tax"]) for a in amounts) == D("10.82") + D("6.65") + D("0.58")
    assert {(a["channel"], a["channel_order_id"], a["currency"]) for a in amounts} == {
        (order.channel, order.channel_order_id, "CHF")}
    assert [s["data"]["shipped_at"] for s in shipments] == [e.time.isoformat().replace("+00:00", "Z")
                                                            for e in sent]
