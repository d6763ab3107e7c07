"""Trace context travels in Kafka headers across every hop: every message of one order's flow, on every topic,
carries a W3C traceparent of one trace — the channel's when it sent one, a fresh one per order otherwise."""

import asyncio
import secrets
import uuid
from contextlib import AsyncExitStack

import pytest

from shared.contracts import wrap
from shared.contracts.fulfillment import FulfillmentOrderCreated, FulfillmentRequested, RequestFulfillment
from shared.contracts.inventory import AllocateReservation, ReservationAllocated, ReserveStock, StockReserved
from shared.contracts.notification import CustomerNotified
from shared.contracts.orders import OrderAccepted, OrderConfirmed, PlaceOrder
from shared.contracts.routing import OrderRouted, RouteOrder
from shared.contracts.topics import FULFILLMENT_WORK, PER_PARTY_ONLY, party_topic_of

from ..support.topics import TopicWatcher, of_type

pytestmark = pytest.mark.e2e

# What one order writes, from the channel's PlaceOrder to the work handed to the location, with how many of each.
FLOW = {OrderAccepted: 1, ReserveStock: 1, StockReserved: 1, RouteOrder: 1, OrderRouted: 1, AllocateReservation: 1,
        ReservationAllocated: 1, RequestFulfillment: 1, FulfillmentRequested: 1, FulfillmentOrderCreated: 1,
        OrderConfirmed: 1, CustomerNotified: 1}


class Flow:
    """Watches every topic an order's flow writes to."""

    def __init__(self, watchers: dict[str, TopicWatcher]):
        self.watchers = watchers

    async def traceparents(self, order_id: uuid.UUID) -> list[tuple[str, list[str]]]:
        """Once the whole flow of the order was seen: each of its messages' type and traceparent headers."""
        def about_order(envelope: dict) -> bool:  # other tests' hostile records share the topics
            data = envelope.get("data")
            return str(order_id) in (envelope.get("subject"), data.get("order_id") if isinstance(data, dict) else None)

        for contract, count in FLOW.items():
            await self.watchers[contract.topic].wait_for(
                lambda e, c=contract: e.get("type") == c.message_type and about_order(e), count=count,
                what=f"{contract.message_type} of order {order_id}")
        return [(envelope["type"], [value.decode() for name, value in record.headers if name == "traceparent"])
                for watcher in self.watchers.values() for envelope, record in watcher.matching(about_order)]


@pytest.fixture
async def flow(config, oms):
    async with AsyncExitStack() as stack:
        yield Flow({topic: await stack.enter_async_context(TopicWatcher(config, topic,
                                                                        every_party=topic in PER_PARTY_ONLY))
                    for topic in {contract.topic for contract in FLOW}})


def single_trace_id(messages: list[tuple[str, list[str]]]) -> str:
    assert len(messages) >= sum(FLOW.values())
    assert all(len(headers) == 1 for _, headers in messages), f"one traceparent on every message: {messages}"
    trace_ids = {headers[0].split("-")[1] for _, headers in messages}
    assert len(trace_ids) == 1, f"one trace for the whole flow: {messages}"
    return trace_ids.pop()


async def place_with_traceparent(driver, order: PlaceOrder, traceparent: str) -> None:
    envelope = wrap(order, source="test/channel", correlation_id=str(uuid.uuid4()))
    await driver.channel.producer.send_and_wait(driver.config.topic(order.topic), envelope.model_dump_json().encode(),
                                                order.key().encode(), headers=[("traceparent", traceparent.encode())])


async def test_an_order_placed_in_a_trace_stays_in_it_on_every_topic(driver, flow, kcat):
    order = driver.order([(await driver.stocked_sku(3), 1)])
    trace_id, channel_span_id = secrets.token_hex(16), secrets.token_hex(8)
    await place_with_traceparent(driver, order, f"00-{trace_id}-{channel_span_id}-01")

    messages = await flow.traceparents(driver.order_id(order))

    assert single_trace_id(messages) == trace_id
    span_ids = {headers[0].split("-")[2] for _, headers in messages}
    assert channel_span_id not in span_ids, "each hop sends the context of its own span, not the one it received"
    [work] = await driver.work.wait_for(of_type(FulfillmentRequested, driver.order_id(order)))
    location_work = party_topic_of(FULFILLMENT_WORK, work["data"]["location_id"])
    work_headers = await asyncio.to_thread(
        kcat.run, driver.config, "-C", "-t", driver.config.topic(location_work), "-o", "beginning", "-e", "-q",
        "-f", "%h\n", capture_output=True, text=True, timeout=30, check=True)
    assert f"traceparent=00-{trace_id}-" in work_headers.stdout, "librdkafka reads the header too"


async def test_an_order_placed_without_trace_context_gets_a_fresh_trace_of_its_own(driver, flow):
    sku = await driver.stocked_sku(3)
    first, second = driver.order([(sku, 1)]), driver.order([(sku, 1)])
    await driver.channel.send(first)
    await driver.channel.send(second)

    first_trace = single_trace_id(await flow.traceparents(driver.order_id(first)))
    second_trace = single_trace_id(await flow.traceparents(driver.order_id(second)))

    assert first_trace != second_trace
    assert int(first_trace, 16) != 0 and int(second_trace, 16) != 0
