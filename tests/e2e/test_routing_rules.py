"""Sourcing rules through all five services: ship-from-store, daily capacity, zones, and the explanation every
routing decision carries."""

import json

import pytest

from shared.contracts.common import Address, Coordinates, ShipTo
from shared.contracts.fulfillment import FulfillmentRequested, LocationUpdate
from shared.contracts.orders import CancelOrder, OrderCancelled, OrderConfirmed
from shared.contracts.routing import OrderRouted, RouteNotFound, RouteOrder, Zone
from shared.contracts.topics import ROUTING_COMMANDS, ROUTING_EVENTS

from ..support.topics import TopicWatcher, of_type
from ops.waiting import eventually
from .conftest import BERLIN, FRANKFURT

pytestmark = pytest.mark.e2e

MUNICH = Coordinates(lat=48.14, lon=11.58)


@pytest.fixture
async def decisions(driver):
    async with TopicWatcher(driver.config, ROUTING_EVENTS) as watcher:
        yield watcher


@pytest.fixture
async def commands(driver):
    async with TopicWatcher(driver.config, ROUTING_COMMANDS) as watcher:
        yield watcher


async def decision_for(decisions: TopicWatcher, order_id) -> dict:
    [event] = await decisions.wait_for(lambda e: (of_type(OrderRouted, order_id)(e)
                                                  or of_type(RouteNotFound, order_id)(e)))
    return event["data"]


def candidate(decision: dict, location_id: str) -> dict:
    [found] = [c for c in decision["details"]["candidates"] if c["location_id"] == location_id]
    return found


async def confirmed_at(driver, order) -> str:
    await driver.channel.send(order)
    [confirmed] = await driver.orders.wait_for(of_type(OrderConfirmed, driver.order_id(order)))
    return confirmed["data"]["location_id"]


async def store_near_warehouse_far(driver, sku_prefix: str = "SKU", **store_flags) -> tuple[str, str, str]:
    """A store in Frankfurt (with these flags) and a warehouse in Berlin, each with 3 units of a new SKU."""
    store, warehouse, sku = driver.unique("ST"), driver.unique("WH"), driver.unique(sku_prefix)
    await driver.location(store, FRANKFURT, kind="store", **store_flags)
    await driver.location(warehouse, BERLIN)
    await driver.stock(sku, store, 3)
    await driver.stock(sku, warehouse, 3)
    return store, warehouse, sku


async def test_ship_from_store_is_chosen_when_nearest_and_enabled(driver, decisions):
    store, warehouse, sku = await store_near_warehouse_far(driver, ships_to_customers=True)
    order = driver.order([(sku, 1)], city="Frankfurt")

    assert await confirmed_at(driver, order) == store
    decision = await decision_for(decisions, driver.order_id(order))
    assert candidate(decision, store)["chosen"] and candidate(decision, store)["kind"] == "store"
    assert candidate(decision, warehouse)["score"] > candidate(decision, store)["score"]


async def test_store_stock_taken_for_an_online_order_is_given_back_when_the_store_says_no(driver, decisions):
    """Store stock is pinned for an online order only by an explained decision, and freed without a person when
    the store rejects the work: the order goes to the next location, the store's units are promisable again."""
    store, warehouse, sku = await store_near_warehouse_far(driver, ships_to_customers=True)
    order = driver.order([(sku, 2)], city="Frankfurt")
    order_id = driver.order_id(order)
    assert await confirmed_at(driver, order) == store
    assert await allocated(driver, sku, store) == 2
    [work] = await driver.work.wait_for(of_type(FulfillmentRequested, order_id))
    await driver.channel.send(LocationUpdate(fulfillment_order_id=work["data"]["fulfillment_order_id"],
                                             order_id=order_id, status="rejected", reason="BUSY"))

    confirmed = await driver.orders.wait_for(of_type(OrderConfirmed, order_id), count=2)
    assert confirmed[1]["data"]["location_id"] == warehouse
    assert await allocated(driver, sku, store) == 0 and await allocated(driver, sku, warehouse) == 2


async def allocated(driver, sku: str, location: str) -> int:
    return await driver.count("SELECT allocated FROM inventory.location_stock WHERE sku = $1 AND location_id = $2",
                              sku, location)


async def test_a_store_with_ship_from_store_off_is_skipped(driver, decisions):
    store, warehouse, sku = await store_near_warehouse_far(driver, ships_to_customers=False, accepts_pickup=True)
    order = driver.order([(sku, 1)], city="Frankfurt")

    assert await confirmed_at(driver, order) == warehouse
    decision = await decision_for(decisions, driver.order_id(order))
    assert candidate(decision, store)["rejected"] == "SHIP_FROM_STORE_DISABLED"
    assert f"{store} SHIP_FROM_STORE_DISABLED" in decision["explanation"]


async def test_stores_do_not_ship_a_sku_class_the_rule_set_keeps_from_them(driver, decisions):
    store, warehouse, sku = await store_near_warehouse_far(driver, "BULKY", ships_to_customers=True)
    order = driver.order([(sku, 1)], city="Frankfurt")

    assert await confirmed_at(driver, order) == warehouse
    decision = await decision_for(decisions, driver.order_id(order))
    assert candidate(decision, store)["rejected"] == "SHIP_FROM_STORE_DISABLED"


async def test_a_location_out_of_capacity_is_skipped_until_a_cancellation_gives_it_back(driver, decisions):
    near, far, sku = driver.unique("WH-NEAR"), driver.unique("WH-FAR"), driver.unique("SKU")
    await driver.location(near, FRANKFURT, daily_capacity=1)
    await driver.location(far, BERLIN)
    await driver.stock(sku, near, 5)
    await driver.stock(sku, far, 5)

    first = driver.order([(sku, 1)], city="Frankfurt")
    assert await confirmed_at(driver, first) == near
    await used_at(driver, near, 1)

    second = driver.order([(sku, 1)], city="Frankfurt")
    assert await confirmed_at(driver, second) == far, "the nearest location is full: the next best takes it"
    decision = await decision_for(decisions, driver.order_id(second))
    assert (candidate(decision, near)["rejected"], candidate(decision, near)["detail"]) == (
        "FULL", "daily capacity used: 1 of 1")

    await driver.channel.send(CancelOrder(channel=first.channel, channel_order_id=first.channel_order_id))
    await driver.orders.wait_for(of_type(OrderCancelled, driver.order_id(first)))
    await used_at(driver, near, 0)
    third = driver.order([(sku, 1)], city="Frankfurt")
    assert await confirmed_at(driver, third) == near, "the cancelled fulfilment order gave its capacity back"


async def used_at(driver, location_id: str, expected: int) -> None:
    async def used():
        return await driver.db.fetchval("SELECT used FROM routing.capacity_usage WHERE location_id = $1",
                                        location_id) == expected

    await eventually(used, what=f"{location_id} to have {expected} fulfilment orders today")


async def test_an_address_without_coordinates_is_routed_by_zone(driver, decisions):
    south, north, sku = driver.unique("WH-SOUTH"), driver.unique("WH-NORTH"), driver.unique("SKU")
    await driver.location(south, MUNICH, zones=[Zone(country="DE", postal_prefixes=["8", "9"])])
    await driver.location(north, BERLIN, zones=[Zone(country="DE", postal_prefixes=["1", "2"])])
    await driver.stock(sku, south, 3)
    await driver.stock(sku, north, 3)
    no_coordinates = Address(name="A. Customer", line1="Marienplatz 1", city="Munich", postal_code="80331",
                             country="DE")
    order = driver.order([(sku, 1)]).model_copy(update={"delivery": ShipTo(address=no_coordinates)})

    assert await confirmed_at(driver, order) == south
    decision = await decision_for(decisions, driver.order_id(order))
    assert decision["details"]["routed_by"] == "zone"
    assert candidate(decision, north)["rejected"] == "OUT_OF_ZONE"


async def test_every_routing_decision_carries_its_explanation(driver, decisions, commands):
    warehouse, store, sku, unroutable = (driver.unique("WH"), driver.unique("ST"), driver.unique("SKU"),
                                         driver.unique("SKU"))
    await driver.location(warehouse, FRANKFURT)
    await driver.location(store, BERLIN, kind="store", ships_to_customers=False, accepts_pickup=True)
    await driver.stock(sku, warehouse, 2)
    await driver.stock(unroutable, store, 2)
    routed, not_routed = driver.order([(sku, 1)]), driver.order([(unroutable, 1)])
    await driver.channel.send(routed)
    await driver.channel.send(not_routed)

    [command] = await commands.wait_for(of_type(RouteOrder, driver.order_id(routed)))
    assert command["data"]["order_value"] == "19.99", "the saga tells routing what the order is worth"
    ok = await decision_for(decisions, driver.order_id(routed))
    assert ok["assignments"] == [{"location_id": warehouse, "lines": [{"sku": sku, "quantity": 1}],
                                  "location_kind": "warehouse"}]
    assert candidate(ok, warehouse)["chosen"] and candidate(ok, warehouse)["distance_km"] is not None
    none = await decision_for(decisions, driver.order_id(not_routed))
    assert none["reason"]["code"] == "NO_LOCATION_WITH_STOCK"
    assert candidate(none, store)["rejected"] == "SHIP_FROM_STORE_DISABLED"
    ours = {str(driver.order_id(routed)), str(driver.order_id(not_routed))}  # not other tests' (the fuzz's)
    decided = decisions.envelopes(lambda e: e["source"] == "oms/routing" and e["data"]["order_id"] in ours
                                  and e["type"] in (OrderRouted.message_type, RouteNotFound.message_type))
    assert len(decided) >= 2
    for event in decided:
        details = event["data"]["details"]
        assert details["rule_set"] == "default@v1" and details["candidates"], event

    for order in (routed, not_routed):
        stored = await eventually(lambda o=order: driver.db.fetchval(
            "SELECT details FROM routing.decisions WHERE order_id = $1", driver.order_id(o)),
            what="the decision to be stored")
        assert json.loads(stored)["candidates"], "the stored decision keeps the explanation too"
