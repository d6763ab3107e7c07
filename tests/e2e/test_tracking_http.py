"""A channel that speaks only HTTP: it places an order through the tracking API (its command reaches capture on the
channel's own topic), follows it to its shipment with tracking, and the read model rebuilt by replay equals the live
one."""

import json
import uuid

import httpx
import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from ops import views
from ops.history import records_behind
from ops.principals import party_topic
from ops.waiting import eventually
from services.tracking.app import TIMELINE_TOPICS
from shared.contracts.fulfillment import FulfillmentRequested, LocationUpdate
from shared.contracts.orders import OrderAccepted, OrderCancellationRejected
from shared.contracts.topics import PARTITIONS
from shared.messaging.service import consumer_group
from shared.messaging.topics import delete_topics

from ..support.topics import of_type

pytestmark = pytest.mark.e2e


@pytest.fixture
async def http_channel(config, oms):
    channel = f"h{uuid.uuid4().hex[:8]}"
    key = await views.add_key(config, channel)
    async with httpx.AsyncClient(base_url=oms["tracking"].url(), timeout=10,
                                 headers={"Authorization": f"Bearer {key}"}) as api:
        yield channel, api
    await delete_topics(config, names=[party_topic("channel", channel)])


async def test_an_order_placed_over_http_is_one_order_tracked_to_its_shipment(driver, http_channel):
    channel, api = http_channel
    sku = await driver.stocked_sku(5)
    body = driver.order([(sku, 2)]).model_dump(mode="json", exclude={"channel"})
    answers = [await api.post("/orders", json=body, headers={"Idempotency-Key": key})
               for key in ("first", "first", "second")]
    assert [a.status_code for a in answers] == [202, 202, 202]
    assert answers[0].json() == answers[1].json(), "the same key twice: the same answer"
    order_id = answers[0].json()["order_id"]
    assert answers[2].json()["order_id"] == order_id

    [work] = await driver.work.wait_for(of_type(FulfillmentRequested, order_id))
    ids = {"fulfillment_order_id": work["data"]["fulfillment_order_id"], "order_id": order_id}
    await driver.channel.send(LocationUpdate(**ids, status="shipped", carrier="DHL", tracking_number="TRK-HTTP"))

    async def shipped():
        view = (await api.get(f"/orders/{order_id}")).json()
        return view if view.get("status") == "shipped" and view["shipments"] and view["notifications"] else None

    view = await eventually(shipped, what="the order shipped in the view")
    assert (view["channel"], view["channel_order_id"]) == (channel, body["channel_order_id"])
    assert [(s["carrier"], s["tracking_number"]) for s in view["shipments"]] == [("DHL", "TRK-HTTP")]
    assert [(line["sku"], line["status"]) for line in view["lines"]] == [(sku, "shipped")]
    assert len(driver.orders.envelopes(of_type(OrderAccepted, order_id))) == 1, "two keys, one channel order: one order"
    assert await driver.count("SELECT count(*) FROM capture.orders WHERE channel = $1", channel) == 1

    cancel = await api.post(f"/orders/{order_id}/cancel", headers={"Idempotency-Key": "cancel"})
    assert cancel.status_code == 202
    await driver.orders.wait_for(of_type(OrderCancellationRejected, order_id))

    async def cancellation_on_the_timeline():
        timeline = (await api.get(f"/orders/{order_id}/timeline")).json()
        return timeline if "OrderCancellationRejected" in {e["type"] for e in timeline} else None

    timeline = await eventually(cancellation_on_the_timeline, what="the refused cancellation on the timeline")
    assert {"OrderAccepted", "OrderConfirmed", "FulfillmentOrderCreated", "ShipmentConfirmed", "OrderShipped",
            "CustomerNotified"} <= {e["type"] for e in timeline}
    assert [e["at"] for e in timeline] == sorted(e["at"] for e in timeline)


async def deliveries_seen(admin, order_id) -> bool:
    """The customer messages are delivered after the event that caused them: the story is told once each
    delivery has ended and tracking has its outcome event."""
    pending, ended = await admin.fetchrow(
        "SELECT count(*) FILTER (WHERE status = 'pending'), count(*) FILTER (WHERE status IN ('sent', 'failed')) "
        "FROM notification.deliveries WHERE order_id = $1", order_id)
    seen = await admin.fetchval("SELECT count(*) FROM tracking.events WHERE order_id = $1 AND type IN "
                                "('NotificationDelivered', 'NotificationFailed')", order_id)
    return pending == 0 and seen == ended


async def test_the_read_model_rebuilt_from_the_topics_equals_the_live_one(driver, http_channel, admin):
    _, api = http_channel
    sku = await driver.stocked_sku(5)
    order = driver.order([(sku, 1)])
    await driver.channel.send(order)
    [work] = await driver.work.wait_for(of_type(FulfillmentRequested, driver.order_id(order)))
    ids = {"fulfillment_order_id": work["data"]["fulfillment_order_id"], "order_id": str(driver.order_id(order))}
    await driver.channel.send(LocationUpdate(**ids, status="shipped", carrier="UPS", tracking_number="TRK-R"))
    await driver.status(driver.order_id(order), "shipped")

    order_id = driver.order_id(order)

    async def told():
        view = await admin.fetchval("SELECT view FROM tracking.orders WHERE order_id = $1", order_id)
        kinds = {n["kind"] for n in json.loads(view)["notifications"]} if view else set()
        return view if "order_shipped" in kinds and json.loads(view)["shipments"] else None

    await eventually(told, what="the order's whole story in the view")
    await eventually(lambda: deliveries_seen(admin, order_id), what="every delivery of its messages ended and seen")
    await tracking_has_read_its_topics_as_they_are_now(driver.config)
    live = await snapshot(admin)
    replayed = await views.rebuild(driver.config)
    rebuilt = await snapshot(admin)
    assert set(rebuilt[1]) >= set(live[1]), "every event the live view had"
    # Other tests' flows may still be moving: each order whose events did not change meanwhile must look the same.
    settled = [o for o in live[0] if events_of(live, o) == events_of(rebuilt, o)]
    moved = {e[2] for e in events_of(rebuilt, order_id).values()} - {e[2] for e in events_of(live, order_id).values()}
    assert order_id in settled and len(settled) > 1, f"the order's events only the rebuild has: {moved}"
    assert {o: rebuilt[0][o] for o in settled} == {o: live[0][o] for o in settled}
    assert replayed.orders >= len(live[0])


async def tracking_has_read_its_topics_as_they_are_now(config) -> None:
    """Until tracking has applied (committed) every record its topics hold now. It reads them up to a second
    behind (READ_SIDE_WAIT_MS) and the rebuild to their ends: an event of the order written a moment before the
    live snapshot (its payment's, say) would otherwise be in the rebuilt view only."""
    by_group = {consumer_group("tracking", topic): [TopicPartition(config.topic(topic), p) for p in range(PARTITIONS)]
                for topic in TIMELINE_TOPICS}
    ends_reader = AIOKafkaConsumer(**config.kafka_login().aiokafka(), enable_auto_commit=False)
    kafka_admin = AIOKafkaAdminClient(**config.kafka_login().aiokafka())
    await ends_reader.start()
    await kafka_admin.start()
    try:
        ends = {group: await ends_reader.end_offsets(partitions) for group, partitions in by_group.items()}

        async def applied() -> bool:
            return not any([await records_behind(kafka_admin, group, ends[group]) for group in by_group])
        await eventually(applied, what="tracking to apply what its topics hold")
    finally:
        await ends_reader.stop()
        await kafka_admin.close()


def events_of(snapshot: tuple[dict, dict], order_id) -> dict:
    return {event_id: event for event_id, event in snapshot[1].items() if event[0] == order_id}


async def snapshot(admin) -> tuple[dict, dict]:
    orders = await admin.fetch("SELECT order_id, view FROM tracking.orders")
    events = await admin.fetch("SELECT event_id, order_id, at, type, topic, data FROM tracking.events")
    return ({r["order_id"]: json.loads(r["view"]) for r in orders},
            {r["event_id"]: (r["order_id"], r["at"], r["type"], r["topic"], r["data"]) for r in events})
