"""The tracking service as a process on real Kafka and Postgres: its read model fed by the topics, rebuilt by replay,
and its HTTP API — per-channel keys, search, idempotent intake onto the channel's own command topic, capture's
reason codes, an outside client (curl) and schemathesis against the OpenAPI document."""

import asyncio
import json
import shutil
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import asyncpg
import httpx
import pytest
from pydantic import ValidationError

from aiokafka import TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.admin.records_to_delete import RecordsToDelete
from aiokafka.errors import TopicAuthorizationFailedError

from ops import history, views
from ops.client import client
from ops.demo import sample_order
from ops.principals import party_topic
from ops.waiting import eventually
from services.capture.validation import rejection
from shared.contracts import Envelope
from shared.contracts.base import refuse_nul_characters
from shared.contracts.fulfillment import ShipmentConfirmed
from shared.contracts.orders import CancelOrder, OrderPurged, PlaceOrder
from shared.contracts.order_rules import order_id_for
from shared.contracts.topics import (FULFILLMENT_LOCATION_UPDATES, ORDER_COMMANDS, ORDER_EVENTS,
                                     TRACKING_ORDER_HISTORY)
from services.tracking.app import TIMELINE_TOPICS
from shared.messaging.service import consumer_group_prefix
from shared.messaging.topics import delete_topics
from shared.settings import Settings

from ..support.services import running
from ..support.stack import stack
from ..support.topics import TopicWatcher, of_type
from ..unit.test_tracking import story

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
async def tracking(config, tmp_path_factory):
    async with running(("tracking",), tmp_path_factory.mktemp("run")) as procs:
        yield procs["tracking"]


@pytest.fixture(scope="module")
async def channels(config):
    """Two channels with a key each: (name, key)."""
    made = [f"t{uuid.uuid4().hex[:8]}" for _ in range(2)]
    yield [(channel, await views.add_key(config, channel)) for channel in made]
    await delete_topics(config, names=[party_topic("channel", channel) for channel in made])


@pytest.fixture(scope="module")
async def api(tracking, channels):
    async with httpx.AsyncClient(base_url=tracking.url(), timeout=10) as http:
        yield http


def auth(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


async def tell(config, channel: str, channel_order_id: str | None = None, customer_id: str = "C-1"):
    """The events of an order shipped in two parcels, published as their services would."""
    place = sample_order(channel_order_id, channel=channel, lines=[("CAP-BLACK", 2), ("TSHIRT-RED-M", 1),
                                                                   ("MUG-WHITE", 1)])
    place = place.model_copy(update={"customer": place.customer.model_copy(update={"customer_id": customer_id})})
    order_id = order_id_for(channel, place.channel_order_id)
    async with client(config, "test/services") as services:
        await services.send_many(story(order_id, place))
    return order_id, place


async def told(api, key: str, order_id) -> dict:
    """The view once every event of `tell` is in (the topics are consumed apart: in no particular order)."""
    async def shown():
        answer = await api.get(f"/orders/{order_id}", headers=auth(key))
        view = answer.json() if answer.status_code == 200 else {}
        whole = (view.get("status") == "shipped" and len(view["shipments"]) == 2 and view["notifications"]
                 and view["payment"]["voided"] is not None)
        return view if whole else None

    return await eventually(shown, what=f"order {order_id}'s whole story in the view")


async def test_an_order_is_tracked_from_its_events(config, api, channels):
    (channel, key), _ = channels
    order_id, place = await tell(config, channel)
    view = await told(api, key, order_id)
    assert [(line["sku"], line["status"]) for line in view["lines"]] == [
        ("CAP-BLACK", "shipped"), ("TSHIRT-RED-M", "shipped"), ("MUG-WHITE", "cancelled")]
    by_channel_id = await api.get(f"/channels/{channel}/orders/{place.channel_order_id}", headers=auth(key))
    assert by_channel_id.json() == view
    shipments = (await api.get(f"/orders/{order_id}/shipments", headers=auth(key))).json()
    assert [(s["carrier"], s["tracking_number"]) for s in shipments] == [("DHL", "T-1"), ("DHL", "T-2")]
    timeline = (await api.get(f"/orders/{order_id}/timeline", headers=auth(key))).json()
    assert [e["type"] for e in timeline][:3] == ["OrderAccepted", "OrderConfirmed", "FulfillmentOrderCreated"]
    assert [e["at"] for e in timeline] == sorted(e["at"] for e in timeline)
    assert {e["topic"] for e in timeline} == {"orders.events.v1", "fulfillment.events.v1", "notification.events.v1",
                                              "payments.events.v1"}
    assert place.customer.email not in json.dumps(timeline)
    payment = view["payment"]
    assert (payment["status"], payment["authorised"], payment["captured"], payment["voided"]) == (
        "captured", "79.96", "59.97", "19.99")
    assert [c["status"] for c in payment["captures"]] == ["captured", "captured"]


async def test_a_channels_key_cannot_read_another_channels_orders(config, api, channels):
    (channel, key), (_, other_key) = channels
    order_id, place = await tell(config, channel)
    await told(api, key, order_id)
    for path in (f"/orders/{order_id}", f"/orders/{order_id}/timeline", f"/orders/{order_id}/shipments",
                 f"/channels/{channel}/orders/{place.channel_order_id}"):
        assert (await api.get(path, headers=auth(other_key))).status_code == 404, path
        assert (await api.get(path)).status_code == 401, path
        assert (await api.get(path, headers=auth("oms_not-a-key"))).status_code == 401, path
    found = (await api.get("/orders", params={"customer_id": "C-1"}, headers=auth(other_key))).json()
    assert order_id not in {o["order_id"] for o in found["orders"]}
    assert (await api.post(f"/orders/{order_id}/cancel", headers={**auth(other_key), "Idempotency-Key": "k"}
                           )).status_code == 404


async def test_search_by_customer_status_and_time_a_page_at_a_time(config, api, channels):
    (channel, key), _ = channels
    customer = f"C-{uuid.uuid4().hex[:6]}"
    placed = [(await tell(config, channel, customer_id=customer))[0] for _ in range(5)]
    for order_id in placed:
        await told(api, key, order_id)
    seen, after = [], None
    while True:
        page = (await api.get("/orders", headers=auth(key), params={
            "customer_id": customer, "status": "shipped", "limit": 2, **({"after": after} if after else {})})).json()
        seen += page["orders"]
        if not (after := page["next"]):
            break
    assert sorted(o["order_id"] for o in seen) == sorted(map(str, placed))
    assert [o["placed_at"] for o in seen] == sorted((o["placed_at"] for o in seen), reverse=True)
    newest = seen[0]["placed_at"]
    since_newest = (await api.get("/orders", headers=auth(key), params={"customer_id": customer,
                                                                         "placed_from": newest})).json()
    assert [o["order_id"] for o in since_newest["orders"]] == [seen[0]["order_id"]]
    assert (await api.get("/orders", headers=auth(key), params={"customer_id": customer, "status": "cancelled"})
            ).json()["orders"] == []
    assert (await api.get("/orders", headers=auth(key), params={"after": "garbage"})).status_code == 422


@pytest.mark.parametrize("moment", ["2026", "0.5", "1764547200"])
async def test_a_time_that_is_not_a_date_is_refused_not_read_as_seconds_since_1970(api, channels, moment):
    """schemathesis (all checks) found `placed_to=0.5` answered 200: pydantic reads a number as a Unix time, so a
    year alone (2026) was 33 minutes past midnight, 1 January 1970, and the search silently found nothing."""
    (_, key), _ = channels
    for name in ("placed_from", "placed_to"):
        answer = await api.get("/orders", headers=auth(key), params={name: moment})
        assert (answer.status_code, [r["code"] for r in answer.json()["reasons"]]) == (422, [f"INVALID_{name.upper()}"])


def order_body(channel_order_id: str, **changes) -> dict:
    body = sample_order(channel_order_id).model_dump(mode="json", exclude={"channel"})
    return {**body, **changes}


async def test_http_intake_is_idempotent_and_speaks_for_the_keys_channel_only(config, api, channels):
    (channel, key), _ = channels
    channel_order_id = f"H-{uuid.uuid4().hex[:8]}"
    body = order_body(channel_order_id)
    async with TopicWatcher(config, party_topic("channel", channel)) as commands:
        first = await api.post("/orders", json=body, headers={**auth(key), "Idempotency-Key": "key-1"})
        again = await api.post("/orders", json=body, headers={**auth(key), "Idempotency-Key": "key-1"})
        other_key = await api.post("/orders", json=body, headers={**auth(key), "Idempotency-Key": "key-2"})
        changed = await api.post("/orders", json={**body, "currency": "USD"},
                                 headers={**auth(key), "Idempotency-Key": "key-1"})
        assert (first.status_code, again.status_code, other_key.status_code) == (202, 202, 202)
        assert again.json() == first.json() and again.headers["location"] == f"/orders/{first.json()['order_id']}"
        assert other_key.json()["order_id"] == first.json()["order_id"] == str(order_id_for(channel, channel_order_id))
        assert (changed.status_code, changed.json()["reasons"][0]["code"]) == (422, "IDEMPOTENCY_KEY_REUSED")
        placed = await commands.wait_for(of_type(PlaceOrder), count=2, what="the two keys' commands")
        marker = await api.post("/orders", json=order_body("MARKER"), headers={**auth(key), "Idempotency-Key": "m"})
        await commands.wait_for(lambda e: e["data"]["channel_order_id"] == "MARKER", what="a later command")
    placed = commands.envelopes(of_type(PlaceOrder))
    assert marker.status_code == 202
    assert [e["id"] for e in placed[:2]] == [first.json()["command_id"], other_key.json()["command_id"]]
    assert {(e["data"]["channel"], e["data"]["channel_order_id"]) for e in placed[:2]} == {(channel, channel_order_id)}
    assert len(placed) == 3, "the same key twice is one command"
    foreign = await api.post("/orders", json={**body, "channel": "web"}, headers={**auth(key), "Idempotency-Key": "f"})
    assert (foreign.status_code, foreign.json()["reasons"][0]["code"]) == (422, "CHANNEL_MISMATCH")


@pytest.mark.parametrize("topic", [ORDER_COMMANDS, ORDER_EVENTS, FULFILLMENT_LOCATION_UPDATES])
async def test_tracking_writes_the_channels_command_topics_and_not_the_shared_one(config, channels, topic):
    (channel, _), _ = channels
    async with client(config, "test/tracking", principal="tracking") as tracking_login:
        await tracking_login.send_raw(party_topic("channel", channel), b"{}")
        with pytest.raises(TopicAuthorizationFailedError):
            await tracking_login.send_raw(topic, b"{}")


@pytest.mark.parametrize(("changes", "codes"), [
    ({"lines": []}, {"NO_LINES"}),
    ({"currency": "XXX"}, {"UNKNOWN_CURRENCY"}),
    ({"lines": [{"sku": "CAP-BLACK", "quantity": 1140, "unit_price": "611076565802.78"}]}, {"INVALID_AMOUNT"}),
    ({"lines": [{"sku": "bad sku", "quantity": 0, "unit_price": "1.00"}]}, {"INVALID_SKU", "INVALID_QUANTITY"}),
    ({"delivery": None, "customer": {"customer_id": "C-1", "email": "not-an-email", "name": "N"}},
     {"MISSING_DELIVERY", "INVALID_CUSTOMER"}),
    ({"customer": {"customer_id": "C-1", "email": "a@example.com", "name": "A\u0000B"}}, {"INVALID_CUSTOMER"}),
])
async def test_an_invalid_order_is_answered_422_with_the_reason_codes_capture_would_give(config, api, channels,
                                                                                          changes, codes):
    (channel, key), _ = channels
    body = {k: v for k, v in order_body(f"I-{uuid.uuid4().hex[:8]}", **changes).items() if v is not None}
    async with TopicWatcher(config, party_topic("channel", channel)) as commands:
        answer = await api.post("/orders", json=body, headers={**auth(key), "Idempotency-Key": str(uuid.uuid4())})
        assert answer.status_code == 422
        assert {r["code"] for r in answer.json()["reasons"]} == codes == capture_codes({**body, "channel": channel})
        assert not commands.envelopes(lambda e: e["data"]["channel_order_id"] == body["channel_order_id"])


@pytest.mark.parametrize("body", [b"{bad", b"6\xff", b'{"reason": "\xff"}'],
                         ids=["not-json", "not-utf8", "not-utf8-inside"])
async def test_a_body_that_is_not_json_is_answered_422_with_a_reason_code_a_client_can_match(api, channels, body):
    """schemathesis (all checks) found a body that is not UTF-8 answered 400 in FastAPI's own shape, undocumented,
    and a cancel's body that is not JSON answered with a code naming the error's offset (INVALID_1)."""
    (_, key), _ = channels
    for path, code in (("/orders", "MALFORMED_ORDER"), (f"/orders/{uuid.uuid4()}/cancel", "INVALID_BODY")):
        answer = await api.post(path, content=body, headers={**auth(key), "Idempotency-Key": str(uuid.uuid4()),
                                                             "Content-Type": "application/json"})
        assert (answer.status_code, [r["code"] for r in answer.json()["reasons"]]) == (422, [code]), answer.text


@pytest.mark.parametrize(("path", "allowed"), [("/orders", {"GET", "POST"}),
                                               (f"/orders/{uuid.uuid4()}/cancel", {"POST"})])
async def test_a_method_a_resource_does_not_take_is_answered_405_naming_every_method_it_does(api, channels, path,
                                                                                            allowed):
    """schemathesis (all checks) found OPTIONS /orders answered `Allow: GET`: Starlette names the methods of the
    first route of the path only, and /orders has two (search and intake)."""
    (_, key), _ = channels
    answer = await api.request("OPTIONS", path, headers=auth(key))
    assert answer.status_code == 405
    assert set(answer.headers["allow"].replace(" ", "").split(",")) == allowed


async def test_an_order_whose_totals_disagree_with_ours_is_answered_422_totals_mismatch(config, api, channels):
    (_, key), _ = channels
    body = sample_order(f"T-{uuid.uuid4().hex[:8]}", lines=[("CAP-BLACK", 1)]).model_dump(mode="json",
                                                                                      exclude={"channel"})
    wrong = {"goods": "19.99", "discount": "0", "shipping": "0", "tax": "0", "total": "18.99"}
    answer = await api.post("/orders", json={**body, "totals": wrong},
                            headers={**auth(key), "Idempotency-Key": str(uuid.uuid4())})
    assert answer.status_code == 422
    [reason] = answer.json()["reasons"]
    assert reason["code"] == "TOTALS_MISMATCH" and "total 18.99 (ours 19.99)" in reason["detail"]


def capture_codes(data: dict) -> set[str]:
    """What capture answers this order with when it comes over Kafka (its consumer checks NULs after the model)."""
    try:
        PlaceOrder.model_validate(data)
        refuse_nul_characters(PlaceOrder, data)
    except ValidationError as error:
        envelope = Envelope(type=PlaceOrder.message_type, source="test", correlationid="c", data=data)
        [rejected] = rejection(envelope, error)
        return {reason.code for reason in rejected.reasons}
    raise AssertionError("the order was meant to be invalid")


async def test_a_cancellation_goes_to_the_channels_topic_for_an_order_the_channel_placed(config, api, channels):
    (channel, key), _ = channels
    order_id, place = await tell(config, channel)
    await told(api, key, order_id)
    async with TopicWatcher(config, party_topic("channel", channel)) as commands:
        answer = await api.post(f"/orders/{order_id}/cancel", json={"reason": "changed my mind"},
                                headers={**auth(key), "Idempotency-Key": f"c-{order_id}"})
        assert answer.status_code == 202
        [cancel] = await commands.wait_for(of_type(CancelOrder, f"{channel}/{place.channel_order_id}"))
    assert (cancel["data"]["channel"], cancel["data"]["reason"]) == (channel, "changed my mind")
    assert (await api.post(f"/orders/{uuid.uuid4()}/cancel", headers={**auth(key), "Idempotency-Key": "x"}
                           )).status_code == 404


@dataclass(frozen=True)
class OwnTracking:
    settings: Settings
    db: asyncpg.Connection
    api: httpx.AsyncClient
    key: str
    order_id: uuid.UUID


@asynccontextmanager
async def own_tracking_told_an_order(config, tmp_path) -> AsyncIterator[OwnTracking]:
    """A tracking of its own (database and topics) that has read one order's story to the end of every topic."""
    async with stack(config, tmp_path, services=("tracking",)) as own:
        channel = f"t{uuid.uuid4().hex[:8]}"
        key = await views.add_key(own.settings, channel)
        db = await asyncpg.connect(own.settings.admin_dsn())
        try:
            async with httpx.AsyncClient(base_url=own.procs["tracking"].url(), timeout=10) as api:
                order_id, _ = await tell(own.settings, channel)
                await told(api, key, order_id)
                await eventually(lambda: caught_up(own.settings),
                                 what="tracking to read every timeline topic to its end")
                yield OwnTracking(own.settings, db, api, key, order_id)
        finally:
            await db.close()


async def test_the_view_rebuilt_by_replaying_the_topics_equals_the_live_one(config, tmp_path):
    """On a tracking of its own: the session's other services go on publishing to the shared topics (a saga's
    deadline, a pickup's expiry), and one event between the live view's snapshot and the replay would tell the
    two apart."""
    async with own_tracking_told_an_order(config, tmp_path) as own:
        live = await snapshot(own.db)
        replayed = await views.rebuild(own.settings)
        assert await snapshot(own.db) == live
        assert await own.db.fetchval("SELECT reloptions FROM pg_class WHERE oid = 'tracking.orders'::regclass") == [
            "fillfactor=70"]  # the swapped-in table keeps the live one's room for HOT updates
        assert replayed.orders == len({order for order, *_ in live[1].values()}) == 1
        assert replayed.bytes_per_order(ORDER_EVENTS) > 0
        late = ShipmentConfirmed(fulfillment_order_id=uuid.uuid4(), order_id=own.order_id, location_id="WH-BERLIN",
                                 lines=[], carrier="UPS", tracking_number="T-9", shipped_at=datetime.now(UTC))
        async with client(own.settings, "test/fulfillment") as fulfillment:
            await fulfillment.send(late)

        async def parcels():
            shown = (await own.api.get(f"/orders/{own.order_id}/shipments", headers=auth(own.key))).json()
            return [s["tracking_number"] for s in shown] if len(shown) == 3 else None

        assert await eventually(parcels, what="the live consumer to go on into the swapped tables") == [
            "T-1", "T-2", "T-9"]


async def test_once_the_topics_let_an_orders_events_go_a_rebuild_finds_them_in_the_order_history(config,
                                                                                                  tmp_path):
    """On a tracking of its own: forgetting every record of the session's shared topics would take other
    modules' orders' stories away from the services that run after this one."""
    async with own_tracking_told_an_order(config, tmp_path) as own:
        await eventually(lambda: own.db.fetchval("SELECT NOT EXISTS (SELECT FROM tracking.history_due) "
                                                 "AND NOT EXISTS (SELECT FROM tracking.outbox)"),
                         what="every order's history to be published")
        live = await snapshot(own.db)
        await forget_everything_on(own.settings, TIMELINE_TOPICS)  # as retention would, after 7 days
        replayed = await views.rebuild(own.settings)
        assert await snapshot(own.db) == live
        assert replayed.bytes_per_order(ORDER_EVENTS) == 0 and replayed.bytes_per_order(TRACKING_ORDER_HISTORY) > 0


async def test_a_purged_order_leaves_the_read_model_and_no_rebuild_brings_it_back(config, tmp_path):
    """Its history is still on the compacted topic before the tombstone (the topic's active segment is never
    compacted), so the rebuild must read the tombstone as the order's end."""
    async with own_tracking_told_an_order(config, tmp_path) as own:
        await eventually(lambda: own.db.fetchval("SELECT NOT EXISTS (SELECT FROM tracking.history_due) "
                                                 "AND NOT EXISTS (SELECT FROM tracking.outbox)"),
                         what="every order's history to be published")
        async with client(own.settings, "test/capture") as capture:
            await capture.send(OrderPurged(order_id=own.order_id, closed_as="delivered", closed_at=datetime.now(UTC)))
        await eventually(lambda: own.db.fetchval("SELECT NOT EXISTS (SELECT FROM tracking.orders) AND NOT EXISTS "
                                                 "(SELECT FROM tracking.events) AND NOT EXISTS "
                                                 "(SELECT FROM tracking.outbox)"),
                         what="the order forgotten and its tombstone published")
        assert (await own.api.get(f"/orders/{own.order_id}", headers=auth(own.key))).status_code == 404
        await forget_everything_on(own.settings, TIMELINE_TOPICS)
        replayed = await views.rebuild(own.settings)
        assert replayed.purged == {own.order_id} and replayed.orders == 0
        assert await snapshot(own.db) == ({}, {})


async def caught_up(config) -> bool:
    """Whether tracking's consumers have committed every timeline topic to its end (other modules of the session
    may have filled them with orders its view is still catching up on)."""
    admin = AIOKafkaAdminClient(**config.kafka_login().aiokafka())
    await admin.start()
    try:
        for topic in TIMELINE_TOPICS:
            group = f"{config.topic_prefix}{consumer_group_prefix('tracking')}{topic}"
            committed = await admin.list_consumer_group_offsets(group)
            for partition, end in (await history.end_offsets(config, topic)).items():
                done = committed.get(TopicPartition(config.topic(topic), partition))
                if end and (done is None or done.offset < end):
                    return False
        return True
    finally:
        await admin.close()


async def forget_everything_on(config, topics) -> None:
    admin = AIOKafkaAdminClient(**config.kafka_login().aiokafka())
    await admin.start()
    try:
        for topic in topics:
            ends = await history.end_offsets(config, topic)
            await admin.delete_records({TopicPartition(config.topic(topic), p): RecordsToDelete(end)
                                        for p, end in ends.items()}, timeout_ms=10_000)
    finally:
        await admin.close()


async def snapshot(admin) -> tuple[dict, dict]:
    orders = await admin.fetch("SELECT order_id, view FROM tracking.orders")
    events = await admin.fetch("SELECT event_id, order_id, at, type, topic, data FROM tracking.events")
    return ({r["order_id"]: json.loads(r["view"]) for r in orders},
            {r["event_id"]: (r["order_id"], r["at"], r["type"], r["topic"], r["data"]) for r in events})


async def test_an_outside_client_places_and_tracks_an_order_with_curl(config, tracking, channels):
    (channel, key), _ = channels
    curl = shutil.which("curl")
    if curl is None:
        pytest.skip("curl is needed")
    body = json.dumps(order_body(f"CURL-{uuid.uuid4().hex[:6]}"))
    placed = await asyncio.to_thread(subprocess.run, [
        curl, "-sS", "-w", "\n%{http_code}", "-X", "POST", f"{tracking.url()}/orders",
        "-H", f"Authorization: Bearer {key}", "-H", "Idempotency-Key: curl-1", "-H", "Content-Type: application/json",
        "-d", body], capture_output=True, text=True, check=True)
    answer, status = placed.stdout.rsplit("\n", 1)
    assert status == "202"
    order_id = json.loads(answer)["order_id"]
    order_id_, _ = await tell(config, channel, json.loads(body)["channel_order_id"])
    assert str(order_id_) == order_id

    async def tracked():
        shown = await asyncio.to_thread(subprocess.run, [
            curl, "-sS", "-H", f"Authorization: Bearer {key}", f"{tracking.url()}/orders/{order_id}/shipments"],
            capture_output=True, text=True)
        return shown.stdout if '"tracking_number":"T-2"' in shown.stdout else None

    assert await eventually(tracked, what="the shipments over curl")


async def test_schemathesis_finds_nothing_but_what_a_schema_cannot_say(config, tracking, channels, tmp_path):
    """Every check but one: positive_data_acceptance expects whatever the schema allows to be taken, but a page's
    cursor is opaque (not every string is one we gave: INVALID_CURSOR), an order's totals must add up
    (TOTALS_MISMATCH) and a key names one request (IDEMPOTENCY_KEY_REUSED), which no schema says."""
    (_, key), _ = channels
    run = await asyncio.to_thread(subprocess.run, [
        str(Path(sys.executable).parent / "schemathesis"), "run", f"{tracking.url()}/openapi.json",
        "--checks", "all", "--exclude-checks", "positive_data_acceptance", "--max-examples", "20", "--seed", "1",
        "--header", f"Authorization: Bearer {key}", "--request-timeout", "10"],
        capture_output=True, text=True, timeout=600, cwd=tmp_path)  # its cache stays out of the checkout
    assert run.returncode == 0, run.stdout[-4000:] + run.stderr[-2000:]
