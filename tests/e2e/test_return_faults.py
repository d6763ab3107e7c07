"""A refund happens exactly once in effect across kill -9 mid-return: of capture while it refunds received
returns, of fulfillment while it turns the locations' receipts into `ReturnReceived`. Afterwards each return has
one `RefundPayment` and one `ReturnRefunded` on the wire, refunds the right amount, restocks its units once, and
the invariant checker finds nothing."""

import asyncio
import json
import uuid
from collections import defaultdict
from decimal import Decimal

import asyncpg
import pytest

from ops import history, load
from ops.client import Client, client
from ops.demo import sample_order
from ops.principals import register_locations
from ops.simulators import PaymentSimulator
from ops.waiting import eventually
from services.capture.validation import order_id_for
from shared.contracts.fulfillment import (
    FulfillmentRequested,
    LocationUpdate,
    ReturnedLine,
    ReturnExpected,
    ReturnReceipt,
    ReturnReceived,
)
from shared.contracts.inventory import ReceiveStock
from shared.contracts.orders import PlaceOrder, PricedLine, RequestReturn, ReturnRefunded
from shared.contracts.payments import Authorization, RefundPayment
from shared.contracts.routing import RegisterLocation
from shared.contracts.topics import FULFILLMENT_EVENTS, FULFILLMENT_WORK, ORDER_EVENTS, PAYMENT_COMMANDS
from shared.db.bootstrap import SERVICES

from ..support.stack import Stack, settled_cleanly, stack
from ..support.topics import TopicWatcher, of_type
from .conftest import FRANKFURT

pytestmark = pytest.mark.e2e
D = Decimal

ORDERS = 30
RETURNS = ("R1", "R2")  # per order, one unit each of the three shipped
RECEIPT_RATE = 20.0  # reports/s: long enough for a kill to land while they are being worked through
KILLS = 3
# 3 x 19.99 less 3.00 discount, 10.82 tax: a unit refunds 19.99 - 1.00 + 3.61; the second unit of a line then
# gets what is left of the two units' cumulative shares (39.98 - 2.00 + 7.21 = 45.19), 22.59.
FIRST_UNIT, SECOND_UNIT = D("22.60"), D("22.59")
STOCK = ORDERS * 3 + 10


@pytest.fixture
async def oms(config, tmp_path):
    async with stack(config, tmp_path) as running:
        yield running


@pytest.mark.parametrize(("victim", "mid_flow"), [
    ("capture", ReturnRefunded),  # killed while it restocks and refunds received returns
    ("fulfillment", ReturnReceived),  # killed while it turns the locations' receipts into ReturnReceived
])
async def test_a_refund_happens_exactly_once_across_kill_9_mid_return(oms: Stack, victim, mid_flow):
    tag = f"RF{uuid.uuid4().hex[:6].upper()}"
    location, sku = f"{tag}-WH", f"{tag}-SKU"
    orders = [_order(f"{tag}-{n:03d}", sku) for n in range(ORDERS)]
    receipts = [ReturnReceipt(order_id=_id(order), return_id=return_id,
                              lines=[ReturnedLine(sku=sku, quantity=1, condition=_condition(n, return_id))])
                for n, order in enumerate(orders) for return_id in RETURNS]
    total = len(receipts)
    async with client(oms.settings, "test/returns") as ops, \
            TopicWatcher(oms.settings, FULFILLMENT_WORK, every_party=True) as work, \
            TopicWatcher(oms.settings, mid_flow.topic) as progress:
        payments = PaymentSimulator(oms.settings, ops, group=f"payments-{tag}")
        running = [asyncio.create_task(payments.run())]
        try:
            await _shipped(oms, ops, work, location, sku, orders)
            await ops.send_many([_returning(order, return_id, sku) for order in orders for return_id in RETURNS])
            await work.wait_for(of_type(ReturnExpected), count=total, timeout=60, what="every return expected")

            # The location reports each receipt twice, as one unsure whether its report arrived would. The reports
            # go in parts: the victim is killed once each of the first parts starts taking effect, while that part
            # is still being sent, and the last part is sent after the last kill.
            reports = [report for receipt in receipts for report in (receipt, receipt.model_copy())]
            size = len(reports) // (KILLS + 1)
            parts = [reports[i:i + size] for i in range(0, len(reports), size)]
            for part in parts[:-1]:
                before = len(progress.envelopes(of_type(mid_flow)))
                sending = asyncio.create_task(load.publish(ops, part, RECEIPT_RATE, chunk=2))
                running.append(sending)
                seen = await progress.wait_for(of_type(mid_flow), count=before + 1, timeout=60,
                                               what=f"a {mid_flow.__name__} of the next part")
                assert len(seen) < total, f"the kill landed after every {mid_flow.__name__}: not mid-return"
                await oms.crash(victim)
                await sending
            await load.publish(ops, parts[-1], RECEIPT_RATE, chunk=2)
            await _settled(oms, total)
        finally:
            for task in running:
                task.cancel()
            await asyncio.gather(*running, return_exceptions=True)

    refunds = await _distinct(oms, PAYMENT_COMMANDS, RefundPayment, "refund_id")
    refunded = await _distinct(oms, ORDER_EVENTS, ReturnRefunded, "return_id")
    received = await _distinct(oms, FULFILLMENT_EVENTS, ReturnReceived, "return_id")
    expected_keys = {(str(_id(order)), return_id) for order in orders for return_id in RETURNS}
    for name, found in (("RefundPayment", refunds), ("ReturnRefunded", refunded), ("ReturnReceived", received)):
        assert set(found) == expected_keys, f"a {name} for every return"
        assert {k: len(v) for k, v in found.items() if len(v) != 1} == {}, f"one {name} per return"

    for order in orders:
        mine = [(refunds[(str(_id(order)), r)], refunded[(str(_id(order)), r)]) for r in RETURNS]
        asked = sorted(D(next(iter(payment.values()))["amount"]) for payment, _ in mine)
        told = sorted(D(next(iter(event.values()))["refund"]["total"]) for _, event in mine)
        assert asked == told == [SECOND_UNIT, FIRST_UNIT], f"order {order.channel_order_id}: each unit refunded once"

    restocked = sum(line.quantity for receipt in receipts for line in receipt.lines if line.condition == "restock")
    conn = await asyncpg.connect(oms.settings.admin_dsn())
    try:
        assert await conn.fetchval("SELECT on_hand FROM inventory.location_stock WHERE sku = $1 AND location_id = $2",
                                   sku, location) == STOCK - 3 * ORDERS + restocked
        assert await conn.fetchval("SELECT count(*) FROM inventory.receipts WHERE receipt_id LIKE 'return:%'") == \
            restocked
        assert await conn.fetchval("SELECT sum(refunded) FROM capture.returns") == ORDERS * (FIRST_UNIT + SECOND_UNIT)
    finally:
        await conn.close()


def _order(channel_order_id: str, sku: str) -> PlaceOrder:
    line = PricedLine(sku=sku, quantity=3, unit_price=D("19.99"), discount=D("3.00"), tax=D("10.82"))
    order = sample_order(channel_order_id).model_copy(update={"lines": [line]})
    return order.model_copy(update={"payment": Authorization(provider="psp", reference=f"auth-{channel_order_id}",
                                                             amount=order.computed_totals().total)})


def _id(order: PlaceOrder):
    return order_id_for(order.channel, order.channel_order_id)


def _condition(n: int, return_id: str) -> str:
    """Every third order's second unit is written off, the rest restocked."""
    return "dispose" if return_id == "R2" and n % 3 == 0 else "restock"


def _returning(order: PlaceOrder, return_id: str, sku: str) -> RequestReturn:
    return RequestReturn(channel=order.channel, channel_order_id=order.channel_order_id, return_id=return_id,
                         lines=[{"sku": sku, "quantity": 1, "reason": "CHANGED_MIND"}])


async def _shipped(oms: Stack, ops: Client, work: TopicWatcher, location: str, sku: str,
                   orders: list[PlaceOrder]) -> None:
    """The orders placed, and each shipped whole by the one location that has their SKU."""
    await register_locations(ops, [RegisterLocation(location_id=location, name=location, kind="warehouse",
                                                    coordinates=FRANKFURT)])
    await ops.send(ReceiveStock(receipt_id=f"{location}:opening", sku=sku, location_id=location, quantity=STOCK))
    conn = await asyncpg.connect(oms.settings.admin_dsn())
    try:
        await eventually(lambda: conn.fetchval("SELECT on_hand = $3 FROM inventory.location_stock "
                                               "WHERE sku = $1 AND location_id = $2", sku, location, STOCK),
                         what="the opening stock")
        await eventually(lambda: conn.fetchval("SELECT 1 FROM routing.locations WHERE location_id = $1", location),
                         what="the location registered")
        await ops.send_many(orders)
        requested = await work.wait_for(of_type(FulfillmentRequested), count=len(orders), timeout=60,
                                        what="every order's work")
        await ops.send_many([LocationUpdate(fulfillment_order_id=w["data"]["fulfillment_order_id"],
                                            order_id=w["data"]["order_id"], status="shipped", carrier="DHL",
                                            tracking_number=f"T{n:04d}") for n, w in enumerate(requested)])
        await eventually(lambda: conn.fetchval("SELECT count(*) = $1 FROM capture.orders WHERE status = 'shipped'",
                                               len(orders)), timeout=60, what="every order shipped")
    finally:
        await conn.close()


async def _settled(oms: Stack, returns: int) -> None:
    """Every return refunded and paid back, nothing left in any outbox, and the invariants hold."""
    async def refunded_and_relayed(conn: asyncpg.Connection, _) -> bool:
        paid = await conn.fetchval("SELECT count(*) FROM capture.returns WHERE refunded IS NOT NULL")
        staged = [await conn.fetchval(f"SELECT count(*) FROM {service}.outbox") for service in SERVICES]
        return paid == returns and not any(staged)

    await settled_cleanly(oms, refunded_and_relayed, timeout=90, interval=0.5,
                          what="every return refunded, the invariants clean")


async def _distinct(oms: Stack, topic: str, contract, id_field: str) -> dict[tuple[str, str], dict[str, dict]]:
    """Per (order, return): the distinct messages of this type on the topic, by envelope id (a message relayed
    twice after a crash keeps its id, which its consumers deduplicate)."""
    found: dict[tuple[str, str], dict[str, dict]] = defaultdict(dict)
    async for record in history.records(oms.settings, topic):
        envelope = json.loads(record.value or b"{}")
        if envelope.get("type") == contract.message_type:
            data = envelope["data"]
            found[(data["order_id"], data[id_field])][envelope["id"]] = data
    return found
