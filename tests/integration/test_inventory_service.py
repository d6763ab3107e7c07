"""The inventory service as a process on real Kafka and Postgres: redelivery, dead letters, moving on."""

import base64
import uuid
from datetime import UTC, datetime
from decimal import Decimal

import pytest

from ops.client import client
from ops.demo import address
from shared.contracts import wrap
from shared.contracts.common import Line, ShipTo
from shared.contracts.inventory import (
    AllocateReservation,
    LocationAvailability,
    OnwardRouting,
    ReceiveStock,
    ReleaseReservation,
    ReservationAllocated,
    ReservationReleased,
    ReserveStock,
    StockReceived,
    StockReserved,
)
from shared.contracts.ops import DeadLetter
from shared.contracts.orders import OrderPurged
from shared.contracts.routing import RouteOrder
from shared.contracts.topics import DEAD_LETTERS, INVENTORY_COMMANDS, INVENTORY_EVENTS, ORDER_PURGES, ROUTING_COMMANDS

from ..support.services import running
from ..support.topics import TopicWatcher, of_type
from ops.waiting import eventually

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
async def inventory_service(config, tmp_path_factory):
    async with running(("inventory",), tmp_path_factory.mktemp("run")) as procs:
        yield procs["inventory"]


async def test_a_redelivered_command_is_applied_once(config, admin, inventory_service):
    sku = f"RD-{uuid.uuid4().hex[:8].upper()}"
    order_id = uuid.uuid4()
    async with client(config, "test/erp") as erp, TopicWatcher(config, INVENTORY_EVENTS) as events:
        await erp.send(ReceiveStock(receipt_id=f"r-{sku}", sku=sku, location_id="WH-1", quantity=10))
        await events.wait_for(of_type(StockReceived, sku))  # keyed by SKU: another partition than the order's
        envelope = wrap(ReserveStock(order_id=order_id, lines=[Line(sku=sku, quantity=4)]),
                        source="test/saga", correlation_id="c-1")
        raw = envelope.model_dump_json().encode()
        for _ in range(3):  # the same message delivered three times
            await erp.send_raw(INVENTORY_COMMANDS, raw, str(order_id))
        await events.wait_for(of_type(StockReserved, order_id))
        marker = uuid.uuid4()  # a later command on the same partition proves the duplicates were consumed
        await erp.send_raw(INVENTORY_COMMANDS, wrap(ReserveStock(order_id=order_id, lines=[Line(sku=sku, quantity=4)]),
                                                    source="test/saga", correlation_id=str(marker))
                           .model_dump_json().encode(), str(order_id))
        await events.wait_for(of_type(StockReserved, order_id), count=2)
    reserved = await admin.fetchval("SELECT reserved FROM inventory.sku_stock WHERE sku = $1", sku)
    assert reserved == 4, "three deliveries and one repeated command still hold the units once"


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        (b"\x00\xffnot json", "NOT_JSON"),
        (b'{"type": "oms.inventory.ReserveStock.v1"}', "INVALID_ENVELOPE"),
        (None, "INVALID_PAYLOAD"),
    ],
)
async def test_a_bad_message_is_dead_lettered_and_the_next_one_processed(config, admin, inventory_service, value,
                                                                           reason):
    sku = f"DL-{uuid.uuid4().hex[:8].upper()}"
    key = f"key-{uuid.uuid4()}"
    if value is None:  # a valid envelope around an invalid payload: negative quantity
        negative = ReserveStock.model_construct(order_id=uuid.uuid4(),
                                                lines=[Line.model_construct(sku=sku, quantity=-3)])
        value = wrap(negative, source="test", correlation_id="c").model_dump_json().encode()
    async with client(config, "test/erp") as erp, TopicWatcher(config, DEAD_LETTERS) as dead:
        await erp.send_raw(INVENTORY_COMMANDS, value, key)
        await erp.send(ReceiveStock(receipt_id=f"r-{sku}", sku=sku, location_id="WH-1", quantity=1))
        [letter] = await dead.wait_for(lambda e: e["type"] == DeadLetter.message_type
                                       and e["data"]["original_key_b64"] == base64.b64encode(key.encode()).decode())
    assert letter["data"]["reason"] == reason
    assert base64.b64decode(letter["data"]["original_value_b64"]) == value
    assert letter["data"]["source_topic"] == config.topic(INVENTORY_COMMANDS)

    async def received():
        return await admin.fetchval("SELECT on_hand FROM inventory.sku_stock WHERE sku = $1", sku)

    assert await eventually(received, what="the next message to be processed") == 1


async def test_held_as_asked_inventory_asks_routing_itself_and_once_pinned_no_more(config, inventory_service):
    sku = f"RT-{uuid.uuid4().hex[:8].upper()}"
    order_id = uuid.uuid4()
    route = OnwardRouting(delivery=ShipTo(address=address()), order_value=Decimal("19.90"), exclude_locations=["WH-9"])
    reserve = ReserveStock(order_id=order_id, lines=[Line(sku=sku, quantity=2)], route=route)
    async with (client(config, "test/saga") as saga, TopicWatcher(config, INVENTORY_EVENTS) as events,
                TopicWatcher(config, ROUTING_COMMANDS) as routing):
        await saga.send(ReceiveStock(receipt_id=f"r-{sku}", sku=sku, location_id="WH-1", quantity=5))
        await events.wait_for(of_type(StockReceived, sku))
        await saga.send(reserve, correlation_id="saga-1")
        [reserved] = await events.wait_for(of_type(StockReserved, order_id))
        [asked] = await routing.wait_for(of_type(RouteOrder, order_id))
        assert reserved["data"]["routing_requested"]
        assert RouteOrder.model_validate(asked["data"]) == RouteOrder(
            order_id=order_id, lines=reserve.lines, delivery=route.delivery, order_value=route.order_value,
            availability=[LocationAvailability(location_id="WH-1", sku=sku, available=5)], exclude_locations=["WH-9"],
            allocate=True)
        assert asked["correlationid"] == "saga-1", "routing's answers belong to the saga's flow"
        await saga.send(AllocateReservation(order_id=order_id, location_id="WH-1"))
        await events.wait_for(of_type(ReservationAllocated, order_id))
        await saga.send(reserve)  # asked again (a deadline): the same answer, but routing is not asked again
        [_, again] = await events.wait_for(of_type(StockReserved, order_id), count=2)
    assert not again["data"]["routing_requested"]


async def test_a_purged_orders_reservation_goes_unless_it_still_holds_units(config, admin, inventory_service):
    """Order retention: a reservation that holds nothing any more is deleted; one still holding units (a defect
    elsewhere, capture closed its order) is kept, its units still reserved."""
    sku = f"PG-{uuid.uuid4().hex[:8].upper()}"
    released, holding = uuid.uuid4(), uuid.uuid4()
    async with client(config, "test/saga") as saga, TopicWatcher(config, INVENTORY_EVENTS) as events:
        await saga.send(ReceiveStock(receipt_id=f"r-{sku}", sku=sku, location_id="WH-1", quantity=10))
        for order_id in (released, holding):
            await saga.send(ReserveStock(order_id=order_id, lines=[Line(sku=sku, quantity=3)]))
            await events.wait_for(of_type(StockReserved, order_id))
        await saga.send(ReleaseReservation(order_id=released, reason="CANCELLED"))
        await events.wait_for(of_type(ReservationReleased, released))
        one_partition = str(uuid.uuid4())
        for order_id in (holding, released):  # in this order, on one partition
            purged = OrderPurged(order_id=order_id, closed_as="cancelled", closed_at=datetime.now(UTC))
            await saga.send_raw(ORDER_PURGES, wrap(purged, source="test/capture", correlation_id="c")
                                .model_dump_json().encode(), one_partition)
    await eventually(lambda: admin.fetchval("SELECT NOT EXISTS (SELECT FROM inventory.reservations "
                                            "WHERE order_id = $1)", released), what="the released one deleted")
    assert await admin.fetchval("SELECT status FROM inventory.reservations WHERE order_id = $1", holding) == "held"
    assert await admin.fetchval("SELECT reserved FROM inventory.sku_stock WHERE sku = $1", sku) == 3
