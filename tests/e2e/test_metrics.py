"""The metrics move when orders flow: what capture's /metrics says about the orders it took, cancelled and
shipped, the saga steps they went through and its handlers' latency, and every service's readiness."""

import urllib.request

import pytest
from prometheus_client.parser import text_string_to_metric_families

from ops.waiting import eventually
from shared.contracts.fulfillment import FulfillmentRequested, LocationUpdate
from shared.contracts.orders import OrderCancelled, OrderShipped, PlaceOrder
from shared.db.bootstrap import SERVICES

from ..support.topics import of_type

pytestmark = pytest.mark.e2e


def scrape(url: str) -> dict[tuple[str, frozenset], float]:
    """Every sample on the service's /metrics, by name and labels."""
    with urllib.request.urlopen(f"{url}/metrics", timeout=5) as response:
        text = response.read().decode()
    return {(sample.name, frozenset(sample.labels.items())): sample.value
            for family in text_string_to_metric_families(text) for sample in family.samples}


def value(samples: dict, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


async def test_an_order_flowing_moves_the_order_saga_and_handler_metrics(driver, oms):
    capture = oms["capture"].url()
    before = scrape(capture)
    sku = await driver.stocked_sku(2)
    shipped, short = driver.order([(sku, 2)]), driver.order([(sku, 5)])

    await driver.channel.send(shipped)
    [work] = await driver.work.wait_for(of_type(FulfillmentRequested, driver.order_id(shipped)))
    ids = {"fulfillment_order_id": work["data"]["fulfillment_order_id"], "order_id": str(driver.order_id(shipped))}
    await driver.channel.send(LocationUpdate(**ids, status="shipped", carrier="DHL", tracking_number="TRK-M1"))
    await driver.orders.wait_for(of_type(OrderShipped, driver.order_id(shipped)))
    await driver.channel.send(short)
    await driver.orders.wait_for(of_type(OrderCancelled, driver.order_id(short)))

    moved = {  # each of these went up by at least this much
        ("oms_orders_total", (("outcome", "accepted"), ("reason", ""))): 2,
        ("oms_orders_total", (("outcome", "shipped"), ("reason", ""))): 1,
        ("oms_orders_total", (("outcome", "cancelled"), ("reason", "OUT_OF_STOCK"))): 1,
        ("oms_handler_duration_seconds_count", (("service", "capture"),
                                                ("message_type", PlaceOrder.message_type))): 2,
        ("oms_saga_transitions_total", (("from_state", "new"), ("to_state", "reserving"))): 2,
        ("oms_saga_transitions_total", (("from_state", "reserving"), ("to_state", "fulfilling"))): 1,
        ("oms_saga_step_duration_seconds_count", (("state", "reserving"),)): 2,
    }

    async def all_moved():
        after = scrape(capture)
        lagging = {name: dict(labels) for (name, labels), by in moved.items()
                   if value(after, name, **dict(labels)) - value(before, name, **dict(labels)) < by}
        if lagging:
            print(f"not moved yet: {lagging}")  # shown if the wait times out
        return not lagging

    await eventually(all_moved, what="capture's order, saga and handler metrics to move")
    after = scrape(capture)
    assert value(after, "oms_saga_step_duration_seconds_sum", state="reserving") > 0
    assert ("oms_sagas_past_deadline", frozenset()) in after, "the deadline gauge is measured"
    assert any(name == "oms_saga_transitions_total" and dict(labels).get("to_state") == "shipped"
               for name, labels in after), "the saga reached shipped"


async def test_every_service_reports_itself_ready_with_its_checks(oms):
    async def ready(service: str) -> bool:
        samples = scrape(oms[service].url())
        return value(samples, "oms_service_ready", service=service) == 1 and all(
            value(samples, "oms_readiness_check_ok", service=service, check=check) == 1
            for check in ("database", "outbox", "consumers"))

    for service in SERVICES:
        await eventually(lambda: ready(service), timeout=60, what=f"{service} to report ready on /metrics")
