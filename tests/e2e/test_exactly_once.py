"""Retries and redeliveries, bad input, and a rush on the last units: nothing lost, nothing applied twice."""

import asyncio
import base64
import uuid

import pytest

from ops import deadletters
from services.capture.validation import order_id_for
from shared.contracts import Envelope, wrap
from shared.contracts.fulfillment import FulfillmentRequested, LocationUpdate, ShipmentConfirmed, fulfillment_order_id
from shared.contracts.inventory import StockReserved
from shared.contracts.ops import DeadLetter, DeadLetterReplayed
from shared.contracts.orders import OrderAccepted, OrderConfirmed, OrderRejected, PlaceOrder
from shared.contracts.topics import FULFILLMENT_LOCATION_UPDATES, INVENTORY_EVENTS, ORDER_COMMANDS
from shared.messaging.service import consumer_group

from ..support.topics import TopicWatcher, of_type
from ops.waiting import eventually
from .conftest import FRANKFURT

pytestmark = pytest.mark.e2e


async def test_retried_and_redelivered_messages_have_one_effect(driver):
    sku = await driver.stocked_sku(10)
    order = driver.order([(sku, 2)])
    order_id = driver.order_id(order)

    first = wrap(order, source="channel/web", correlation_id="retry-test")
    raw = first.model_dump_json().encode()
    await driver.channel.send_raw(ORDER_COMMANDS, raw, order.key())  # the channel's message...
    await driver.channel.send_raw(ORDER_COMMANDS, raw, order.key())  # ...delivered twice
    await driver.channel.send(order)  # and the channel retrying with a new message id
    [work] = await driver.work.wait_for(of_type(FulfillmentRequested, order_id))

    # A reply inside the pipeline redelivered: the saga has moved on and must not act on it again.
    reserved_raw = next(r.value for r in await _records(driver, INVENTORY_EVENTS, StockReserved, order_id))
    await driver.channel.send_raw(INVENTORY_EVENTS, reserved_raw, str(order_id))

    ids = {"fulfillment_order_id": work["data"]["fulfillment_order_id"], "order_id": str(order_id)}
    shipped = LocationUpdate(**ids, status="shipped", carrier="UPS", tracking_number="1Z")
    await driver.channel.send(shipped)
    await driver.channel.send(shipped)  # the location reports twice
    await driver.erp.wait_for(of_type(ShipmentConfirmed, order_id))
    await driver.status(order_id, "shipped")

    async def quiet():  # let any duplicate that would be produced arrive before counting
        return await driver.count("SELECT count(*) FROM notification.notifications WHERE order_id = $1", order_id) == 2

    await eventually(quiet, what="both customer messages")
    assert await driver.count("SELECT count(*) FROM capture.orders WHERE order_id = $1", order_id) == 1
    assert await driver.count("SELECT count(*) FROM inventory.reservations WHERE order_id = $1", order_id) == 1
    assert await driver.count("SELECT count(*) FROM fulfillment.fulfillment_orders WHERE order_id = $1", order_id) == 1
    await eventually(lambda: driver.count("SELECT on_hand = 8 FROM inventory.sku_stock WHERE sku = $1", sku),
                     what="the shipment to be committed (CommitReservation races the customer message)")
    assert len(driver.orders.envelopes(of_type(OrderAccepted, order_id))) == 1
    assert len(driver.orders.envelopes(of_type(OrderConfirmed, order_id))) == 1
    assert len(driver.work.envelopes(of_type(FulfillmentRequested, order_id))) == 1
    assert len(driver.erp.envelopes(of_type(ShipmentConfirmed, order_id))) == 1
    kinds = await driver.db.fetch("SELECT kind FROM notification.notifications WHERE order_id = $1 ORDER BY kind",
                                  order_id)
    assert [r["kind"] for r in kinds] == ["order_confirmed", "order_shipped"]


async def _records(driver, topic, contract, order_id):
    async with TopicWatcher(driver.config, topic) as watcher:
        await watcher.wait_for(of_type(contract, order_id))
        return [r for r in watcher.records if f'"subject":"{order_id}"'.encode() in r.value
                and contract.message_type.encode() in r.value]


def place_order_envelope(data: dict) -> bytes:
    return Envelope(type=PlaceOrder.message_type, source="channel/web", correlationid="bad", data=data) \
        .model_dump_json().encode()


async def test_malformed_orders_are_dead_lettered_answered_and_the_next_order_goes_through(driver):
    sku = await driver.stocked_sku(5)
    negative = driver.order([(sku, 1)]).model_dump(mode="json")
    negative["lines"][0]["quantity"] = -2
    missing = driver.order([(sku, 1)]).model_dump(mode="json")
    del missing["customer"], missing["lines"]
    bad = {
        "NOT_JSON": b"{this is not json",
        "INVALID_ENVELOPE": b'{"hello": "world"}',
        "INVALID_PAYLOAD": place_order_envelope(negative),
        "INVALID_PAYLOAD ": place_order_envelope(missing),
    }
    for value in bad.values():
        await driver.channel.send_raw(ORDER_COMMANDS, value, "bad")
    good = driver.order([(sku, 1)])
    await driver.channel.send(good)

    await driver.status(driver.order_id(good), "confirmed")
    originals = {base64.b64encode(v).decode(): reason.strip() for reason, v in bad.items()}
    letters = await driver.dead_letters.wait_for(
        lambda e: e["type"] == DeadLetter.message_type and e["data"]["original_value_b64"] in originals, count=4)
    for letter in letters:
        assert letter["data"]["reason"] == originals[letter["data"]["original_value_b64"]]
        assert letter["data"]["consumer"] == consumer_group("capture", ORDER_COMMANDS)
    negative_id = order_id_for(negative["channel"], negative["channel_order_id"])
    [rejected] = await driver.orders.wait_for(of_type(OrderRejected, f"web/{negative['channel_order_id']}"))
    assert rejected["data"]["order_id"] == str(negative_id)
    assert [r["code"] for r in rejected["data"]["reasons"]] == ["INVALID_QUANTITY"]
    assert await driver.count("SELECT count(*) FROM capture.orders WHERE order_id = $1", negative_id) == 0


async def test_a_rush_on_the_last_units_never_oversells(driver):
    sku = await driver.stocked_sku(5, prefix="LAST")
    orders = [driver.order([(sku, 1)]) for _ in range(20)]
    await driver.channel.send_many(orders)
    order_ids = [driver.order_id(o) for o in orders]
    statuses = await asyncio.gather(*(driver.status(i, "confirmed", "cancelled", timeout=60) for i in order_ids))
    assert statuses.count("confirmed") == 5
    assert statuses.count("cancelled") == 15
    row = await driver.db.fetchrow("SELECT on_hand, reserved FROM inventory.sku_stock WHERE sku = $1", sku)
    assert (row["on_hand"], row["reserved"]) == (5, 5)
    allocated = await driver.count("SELECT allocated FROM inventory.location_stock WHERE sku = $1", sku)
    assert allocated == 5


async def test_a_report_on_an_unknown_fulfilment_order_is_dead_lettered_alone_with_a_reason(driver):
    sku = await driver.stocked_sku(1)
    order = driver.order([(sku, 1)])
    order_id = driver.order_id(order)
    await driver.channel.send(order)
    [work] = await driver.work.wait_for(of_type(FulfillmentRequested, order_id))

    unknown = LocationUpdate(fulfillment_order_id=uuid.uuid4(), order_id=order_id, status="picked")
    shipped = LocationUpdate(fulfillment_order_id=work["data"]["fulfillment_order_id"], order_id=order_id,
                             status="shipped", carrier="DHL", tracking_number="OK1")
    await driver.channel.send_many([unknown, shipped])  # same key: same partition, most likely one batch

    await driver.erp.wait_for(of_type(ShipmentConfirmed, order_id))
    [letter] = await driver.dead_letters.wait_for(
        lambda e: e["type"] == DeadLetter.message_type and e["data"]["reason"] == "UNKNOWN_FULFILLMENT_ORDER"
        and str(unknown.fulfillment_order_id) in e["data"]["detail"])
    assert letter["data"]["consumer"] == consumer_group("fulfillment", FULFILLMENT_LOCATION_UPDATES)


async def test_a_dead_letter_is_replayed_once_its_cause_is_gone(driver):
    """A location reports a shipment before the OMS has the fulfilment order; once it has, the operator
    replays the dead letter and the shipment goes through."""
    location, sku = driver.unique("WH"), driver.unique("SKU")
    await driver.location(location, FRANKFURT)
    await driver.stock(sku, location, 1)
    order = driver.order([(sku, 1)])
    order_id = driver.order_id(order)
    early = LocationUpdate(fulfillment_order_id=fulfillment_order_id(order_id, location), order_id=order_id,
                           status="shipped", carrier="UPS", tracking_number="EARLY1")
    await driver.channel.send(early)
    await driver.dead_letters.wait_for(lambda e: e["type"] == DeadLetter.message_type
                                       and str(early.fulfillment_order_id) in e["data"]["detail"])
    await driver.channel.send(order)
    await driver.status(order_id, "confirmed")

    [letter] = [item.letter for item in await deadletters.read_all(driver.config)
                if str(early.fulfillment_order_id) in item.letter.detail]
    await deadletters.replay(driver.channel, letter, replayed_by="test-operator")
    await deadletters.replay(driver.channel, letter, replayed_by="test-operator")  # by mistake, twice
    [shipment] = await driver.erp.wait_for(of_type(ShipmentConfirmed, order_id))
    assert shipment["data"]["tracking_number"] == "EARLY1"
    assert await driver.status(order_id, "shipped") == "shipped"
    await driver.dead_letters.wait_for(lambda e: e["type"] == DeadLetterReplayed.message_type
                                       and e["data"]["position"] == letter.key(), count=2, what="both replays audited")
    [listed] = [item for item in await deadletters.read_all(driver.config) if item.position == letter.key()]
    assert [r.replayed_by for r in listed.replays] == ["test-operator", "test-operator"]
    replayed_ids = {r.message_id for r in listed.replays}
    assert len(replayed_ids) == 1
    assert await driver.count("SELECT count(*) FROM fulfillment.inbox WHERE message_key = $1",
                              replayed_ids.pop()) == 1
    assert len(driver.erp.envelopes(of_type(ShipmentConfirmed, order_id))) == 1, "two replays, one effect"
