"""The routing service as a process on real Kafka and Postgres: daily capacity counted from fulfilment events
and given back, once per fulfilment order however often the events arrive, and every decision explained."""

import asyncio
import json
import os
import uuid

import pytest

from ops.client import client
from ops.processes import ServiceProcess
from shared.contracts import wrap
from shared.contracts.common import Address, Coordinates, Line, ReasonCode, ShipTo
from shared.contracts.fulfillment import (
    FulfillmentCancelled,
    FulfillmentOrderCreated,
    FulfillmentRejected,
    fulfillment_order_id,
)
from shared.contracts.inventory import AllocateReservation, LocationAvailability
from shared.contracts.routing import LocationRegistered, OrderRouted, RegisterLocation, RouteOrder
from shared.contracts.topics import FULFILLMENT_EVENTS, INVENTORY_COMMANDS, ROUTING_EVENTS

from ..support.services import running
from ..support.topics import TopicWatcher, of_type
from ops.waiting import eventually

pytestmark = pytest.mark.integration

FRANKFURT = Coordinates(lat=50.11, lon=8.68)
BERLIN = Coordinates(lat=52.52, lon=13.40)


@pytest.fixture(scope="module")
async def routing_service(config, tmp_path_factory):
    async with running(("routing",), tmp_path_factory.mktemp("run")) as procs:
        yield procs["routing"]


def tag() -> str:
    return uuid.uuid4().hex[:6].upper()


async def test_capacity_is_counted_and_given_back_once_per_fulfilment_order(config, admin, routing_service):
    near, far, marker = f"WH-NEAR-{tag()}", f"WH-FAR-{tag()}", f"WH-MARK-{tag()}"
    order_id = uuid.uuid4()
    fo = fulfillment_order_id(order_id, near)
    async with client(config, "test/ops") as ops, TopicWatcher(config, ROUTING_EVENTS) as events:
        await ops.send(RegisterLocation(location_id=near, name=near, kind="warehouse", coordinates=FRANKFURT,
                                        daily_capacity=1))
        await ops.send(RegisterLocation(location_id=far, name=far, kind="warehouse", coordinates=BERLIN))
        await events.wait_for(lambda e: of_type(LocationRegistered)(e) and e["data"]["location_id"] == far)

        created = FulfillmentOrderCreated(fulfillment_order_id=fo, order_id=order_id, location_id=near,
                                          lines=[Line(sku="SKU-1", quantity=1)])
        await deliver_repeatedly(ops, created)
        await mark(ops, admin, order_id, marker)
        assert await used(admin, near) == 1, "three deliveries of one event and a repeat of it count once"

        full = await route(ops, events, near, far)
        assert full["data"]["location_id"] == far
        [rejected] = [c for c in full["data"]["details"]["candidates"] if c["location_id"] == near]
        assert (rejected["rejected"], rejected["detail"]) == ("FULL", "daily capacity used: 1 of 1")

        await deliver_repeatedly(ops, FulfillmentCancelled(order_id=order_id, location_id=near,
                                                           fulfillment_order_id=fo, existed=True))
        await ops.send(FulfillmentRejected(fulfillment_order_id=fo, order_id=order_id, location_id=near,
                                           reason=ReasonCode(code="SHORT_PICK")))
        await mark(ops, admin, order_id, f"{marker}-2")
        assert await used(admin, near) == 0, "a cancelled fulfilment order gives its unit back once"

        free_again = await route(ops, events, near, far)
        assert free_again["data"]["location_id"] == near

    stored = await admin.fetch("SELECT location_id, details, rule_set, assignments FROM routing.decisions "
                               "WHERE location_id = ANY($1) ORDER BY decision_id", [near, far])
    assert [r["location_id"] for r in stored] == [far, near]
    assert all(r["rule_set"] == "default@v1" and r["details"] for r in stored)
    assert json.loads(stored[1]["assignments"]) == [{"location_id": near, "lines": [{"sku": "SKU-1", "quantity": 1}],
                                                     "location_kind": "warehouse"}]


async def deliver_repeatedly(ops, event) -> None:
    """The same message three times (a redelivery), then the same event again under a new message id."""
    raw = wrap(event, source="test/fulfillment", correlation_id="c-1").model_dump_json().encode()
    for _ in range(3):
        await ops.send_raw(FULFILLMENT_EVENTS, raw, event.key())
    await ops.send(event)


async def mark(ops, admin, order_id: uuid.UUID, location_id: str) -> None:
    """A later event on the same partition: once it counted, everything before it has been consumed."""
    await ops.send(FulfillmentOrderCreated(fulfillment_order_id=uuid.uuid4(), order_id=order_id,
                                           location_id=location_id, lines=[Line(sku="SKU-1", quantity=1)]))
    await eventually(lambda: used(admin, location_id), what=f"the marker at {location_id} to be counted")


async def used(admin, location_id: str) -> int | None:
    return await admin.fetchval("SELECT used FROM routing.capacity_usage WHERE location_id = $1", location_id)


async def route(ops, events, *locations: str, allocate: bool = False) -> dict:
    order_id = uuid.uuid4()
    address = Address(name="A", line1="Street 1", city="Frankfurt", postal_code="60311", country="DE",
                      coordinates=FRANKFURT)
    await ops.send(RouteOrder(order_id=order_id, lines=[Line(sku="SKU-1", quantity=1)],
                              delivery=ShipTo(address=address), allocate=allocate,
                              availability=[LocationAvailability(location_id=loc, sku="SKU-1", available=5)
                                            for loc in locations]))
    [routed] = await events.wait_for(of_type(OrderRouted, order_id))
    return routed


async def test_asked_to_allocate_routing_has_inventory_pin_the_order_where_it_routed_it(config, routing_service):
    warehouse = f"WH-PIN-{tag()}"
    async with client(config, "test/ops") as ops, TopicWatcher(config, ROUTING_EVENTS) as events, \
            TopicWatcher(config, INVENTORY_COMMANDS) as inventory:
        await ops.send(RegisterLocation(location_id=warehouse, name=warehouse, kind="warehouse", coordinates=BERLIN))
        await events.wait_for(lambda e: of_type(LocationRegistered)(e) and e["data"]["location_id"] == warehouse)
        only_routed = await route(ops, events, warehouse)
        routed = await route(ops, events, warehouse, allocate=True)
        order_id = routed["data"]["order_id"]
        [pin] = await inventory.wait_for(of_type(AllocateReservation, uuid.UUID(order_id)))
    assert pin["data"]["location_id"] == warehouse
    assert pin["data"]["assignments"] == [{"location_id": warehouse, "lines": [{"sku": "SKU-1", "quantity": 1}],
                                           "location_kind": "warehouse"}], "inventory, and so the saga, learn its kind"
    assert pin["causationid"] == routed["causationid"] and pin["correlationid"] == routed["correlationid"]
    assert not inventory.envelopes(lambda e: e["data"].get("order_id") == only_routed["data"]["order_id"])
    assert (routed["data"]["allocation_requested"], only_routed["data"]["allocation_requested"]) == (True, False), \
        "the decision says so, and the saga, awaiting inventory's answer, skips it"


async def test_an_invalid_rule_file_stops_the_service_at_start_up_with_the_reason(tmp_path):
    rules = tmp_path / "rules.toml"
    rules.write_text("format = 1\nname = 'broken'\nversion = 1\n[split]\nmax_nodes = 0\n")
    proc = ServiceProcess("routing", tmp_path).spawn({**os.environ, "OMS_ROUTING_RULES": str(rules)})
    assert await asyncio.to_thread(proc.wait, 30) != 0
    log = ServiceProcess("routing", tmp_path).logfile.read_text()
    assert f"configuration error: routing rule set {rules}: split.max_nodes" in log
    assert "service.started" not in log
