"""The inventory service as a process on real Kafka and Postgres: safety stock, the ATP query over HTTP (asked
with curl, as a channel would), availability events, counts and adjustments, reservation expiry."""

import json
import os
import subprocess
import uuid

import pytest

from ops.client import client
from ops.waiting import eventually
from shared.contracts.common import Line
from shared.contracts.inventory import (
    AdjustStock,
    AllocateReservation,
    AvailabilityChanged,
    ReceiveStock,
    RecordCycleCount,
    ReservationAllocated,
    ReservationExpired,
    ReserveStock,
    SafetyStockSet,
    SetSafetyStock,
    StockAdjusted,
    StockAdjustmentRefused,
    StockReceived,
    StockReserved,
    StockUnavailable,
)
from shared.contracts.topics import INVENTORY_AVAILABILITY, INVENTORY_EVENTS

from ops.processes import ServiceProcess
from shared.settings import Settings

from ..support.services import running, wait_started
from ..support.topics import TopicWatcher, of_type

pytestmark = pytest.mark.integration

TTL_SECONDS = 2.0
# The default threshold, in every inventory process of the session: the end-to-end tests' inventory service keeps
# running in the same consumer group, and may take this module's commands.
LOW_STOCK = Settings.model_fields["low_stock_threshold"].default


@pytest.fixture(scope="module")
async def inventory_service(config, tmp_path_factory):
    async with running(("inventory",), tmp_path_factory.mktemp("run")) as procs:
        yield procs["inventory"]


@pytest.fixture
async def expiring(inventory_service, tmp_path):
    """A second inventory instance whose expiry task gives held reservations TTL_SECONDS: only the expiry test
    runs with it (a short TTL everywhere would expire the other tests' held reservations under a slow machine)."""
    second = ServiceProcess("inventory", tmp_path, instance=2)  # its own member id: instances must not fence
    second.start({**os.environ, "OMS_RESERVATION_TTL_SECONDS": str(TTL_SECONDS)})
    try:
        await wait_started(second)
        yield second
    finally:
        second.stop()


@pytest.fixture
async def erp(config, inventory_service):
    async with client(config, "test/erp") as erp:
        yield erp


@pytest.fixture
async def events(config):
    async with TopicWatcher(config, INVENTORY_EVENTS) as events:
        yield events


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8].upper()}"


def curl(url: str) -> tuple[int, dict]:
    """An outside client: curl, printing the body and then the status code."""
    out = subprocess.run(["curl", "-s", "-w", "\n%{http_code}", url], capture_output=True, text=True, timeout=10,
                         check=True).stdout
    body, status = out.rsplit("\n", 1)
    return int(status), json.loads(body)


async def receive(erp, events, sku: str, location_id: str, quantity: int) -> None:
    await erp.send(ReceiveStock(receipt_id=unique("R"), sku=sku, location_id=location_id, quantity=quantity))
    await events.wait_for(lambda e: of_type(StockReceived, sku)(e) and e["data"]["location_id"] == location_id)


async def test_safety_stock_is_kept_back_from_reservations_routing_and_the_atp_query(erp, events, inventory_service):
    sku, near, far = unique("SS"), unique("WH"), unique("WH")
    await receive(erp, events, sku, near, 10)
    await receive(erp, events, sku, far, 4)
    await erp.send(SetSafetyStock(location_id=near, quantity=3))
    await erp.send(SetSafetyStock(location_id=far, sku=sku, quantity=1))
    await events.wait_for(of_type(SafetyStockSet, far))

    status, atp = curl(f"{inventory_service.url()}/atp/{sku}")
    assert status == 200
    assert (atp["sku"], atp["atp"], atp["on_hand"], atp["safety_stock"]) == (sku, 10, 14, 4)
    assert [(x["location_id"], x["atp"]) for x in atp["locations"]] == sorted([(near, 7), (far, 3)])

    too_many, enough = uuid.uuid4(), uuid.uuid4()
    await erp.send(ReserveStock(order_id=too_many, lines=[Line(sku=sku, quantity=11)]))
    [refused] = await events.wait_for(of_type(StockUnavailable, too_many))
    assert refused["data"]["reason"]["code"] == "OUT_OF_STOCK"
    assert refused["data"]["shortages"] == [{"sku": sku, "requested": 11, "available": 10}]
    await erp.send(ReserveStock(order_id=enough, lines=[Line(sku=sku, quantity=8)]))
    [reserved] = await events.wait_for(of_type(StockReserved, enough))
    assert {(a["location_id"], a["available"]) for a in reserved["data"]["availability"]} == {(near, 7), (far, 3)}
    assert curl(f"{inventory_service.url()}/atp/{sku}")[1]["atp"] == 2


async def test_the_atp_query_answers_404_for_a_sku_never_stocked(inventory_service):
    assert curl(f"{inventory_service.url()}/atp/NEVER-STOCKED")[0] == 404
    assert curl(f"{inventory_service.url()}/atp/not%20a%20sku")[0] == 404


async def test_availability_changes_are_announced_when_atp_crosses_the_threshold_and_zero(config, erp, events):
    sku, location = unique("AV"), unique("WH")
    async with TopicWatcher(config, INVENTORY_AVAILABILITY) as availability:
        await receive(erp, events, sku, location, LOW_STOCK + 2)
        [arrived] = await availability.wait_for(of_type(AvailabilityChanged, sku))
        # One at a time: keyed by order, the two reservations may land on different partitions, in any order.
        await erp.send(ReserveStock(order_id=uuid.uuid4(), lines=[Line(sku=sku, quantity=3)]))
        await availability.wait_for(of_type(AvailabilityChanged, sku), count=2)
        await erp.send(ReserveStock(order_id=uuid.uuid4(), lines=[Line(sku=sku, quantity=LOW_STOCK - 1)]))
        changes = await availability.wait_for(of_type(AvailabilityChanged, sku), count=3)
    assert [(c["data"]["previous_status"], c["data"]["status"], c["data"]["atp"]) for c in changes] == [
        ("out_of_stock", "in_stock", LOW_STOCK + 2), ("in_stock", "low_stock", LOW_STOCK - 1),
        ("low_stock", "out_of_stock", 0)]
    assert arrived["causationid"] is not None, "caused by the receipt, in its transaction"


async def test_counts_and_adjustments_apply_once_per_document_and_never_below_allocated(admin, erp, events):
    sku, location = unique("CC"), unique("WH")
    await receive(erp, events, sku, location, 6)
    order = uuid.uuid4()
    await erp.send(ReserveStock(order_id=order, lines=[Line(sku=sku, quantity=4)]))
    await erp.send(AllocateReservation(order_id=order, location_id=location))
    await events.wait_for(of_type(ReservationAllocated, order))

    await erp.send(RecordCycleCount(document_id=f"count-{sku}", sku=sku, location_id=location, counted=3))
    [refused] = await events.wait_for(of_type(StockAdjustmentRefused, sku))
    assert refused["data"]["reason"]["code"] == "BELOW_ALLOCATED"
    adjustment = AdjustStock(document_id=f"adj-{sku}", sku=sku, location_id=location, change=-2, reason="damaged")
    await erp.send(adjustment)
    await erp.send(adjustment)  # the ERP sends the document again: booked once
    await erp.send(RecordCycleCount(document_id=f"count2-{sku}", sku=sku, location_id=location, counted=9))
    adjusted = await events.wait_for(of_type(StockAdjusted, sku), count=2)
    assert [(a["data"]["kind"], a["data"]["change"], a["data"]["on_hand"]) for a in adjusted] == [
        ("adjustment", -2, 4), ("count", 5, 9)]
    assert await admin.fetchval("SELECT on_hand FROM inventory.location_stock WHERE sku = $1", sku) == 9
    kinds = [r["kind"] for r in await admin.fetch(
        "SELECT kind FROM inventory.stock_ledger WHERE sku = $1 AND location_id IS NOT NULL ORDER BY entry_id", sku)]
    assert kinds == ["receipt", "allocate", "adjustment", "count"]


async def test_a_held_reservation_expires_and_an_allocated_one_does_not(admin, erp, events, expiring):
    sku, location = unique("EX"), unique("WH")
    await receive(erp, events, sku, location, 5)
    held, allocated = uuid.uuid4(), uuid.uuid4()
    await erp.send(ReserveStock(order_id=allocated, lines=[Line(sku=sku, quantity=1)]))
    await erp.send(AllocateReservation(order_id=allocated, location_id=location))
    await events.wait_for(of_type(ReservationAllocated, allocated))
    await erp.send(ReserveStock(order_id=held, lines=[Line(sku=sku, quantity=2)]))
    await events.wait_for(of_type(StockReserved, held))

    [expired] = await events.wait_for(of_type(ReservationExpired, held), timeout=30)
    assert expired["data"]["lines"] == [{"sku": sku, "quantity": 2}]
    assert await admin.fetchval("SELECT reserved FROM inventory.sku_stock WHERE sku = $1", sku) == 1
    assert await admin.fetchval("SELECT status FROM inventory.reservations WHERE order_id = $1", held) == "expired"
    assert await admin.fetchval("SELECT sum(reserved) FROM inventory.stock_ledger WHERE order_id = $1 "
                                "AND kind = 'expiry'", held) == -2

    async def allocated_status():
        return await admin.fetchval("SELECT status FROM inventory.reservations WHERE order_id = $1", allocated)

    assert await eventually(allocated_status) == "allocated"
    assert events.envelopes(of_type(ReservationExpired, allocated)) == []
