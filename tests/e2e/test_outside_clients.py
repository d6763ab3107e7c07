"""Outside clients with the settings a channel or a location would be given: their own SCRAM credentials, their
own topic, nothing else; and what the OMS does when one speaks for another."""

import asyncio
import json
import uuid

from ops import cli
from ops.client import client
from ops.principals import ensure_party_topics, party_topic
from ops.waiting import eventually
from shared.contracts import Contract, wrap
from shared.contracts.fulfillment import FulfillmentRequested, LocationUpdate, ShipmentConfirmed
from shared.contracts.ops import DeadLetter
from shared.contracts.common import Line
from shared.contracts.orders import CancelOrderLines, OrderAccepted, OrderConfirmed, OrderEdited
from shared.contracts.routing import RegisterLocation
from shared.contracts.topics import FULFILLMENT_WORK, ORDER_EVENTS

from ..support.topics import of_type
from .conftest import FRANKFURT


async def test_an_order_produced_by_kcat_on_the_channels_own_topic_is_accepted(driver, kcat, party):
    channel = await party("channel", f"t{uuid.uuid4().hex[:8]}")
    name = channel.name.removeprefix("channel-")
    order = driver.order([(await driver.stocked_sku(1), 1)], channel=name)
    await asyncio.to_thread(kcat.run, driver.config, "-P", "-t", driver.config.topic(party_topic("channel", name)),
                            "-K", "\t", "-z", "snappy", principal=channel.name, input=kcat_record(order),
                            check=True, timeout=30)

    # Read from its start once capture finds the new topic (a metadata refresh away).
    await driver.orders.wait_for(of_type(OrderAccepted, driver.order_id(order)), timeout=60,
                                 what="the kcat order accepted")


async def test_a_line_cancellation_produced_by_kcat_with_gzip_is_applied(driver, kcat, party):
    channel = await party("channel", f"t{uuid.uuid4().hex[:8]}")
    name = channel.name.removeprefix("channel-")
    sku = await driver.stocked_sku(2)
    order = driver.order([(sku, 2)], channel=name)
    async with client(driver.config, "test/channel", principal=channel.name) as sender:
        await sender.send(order, topic=party_topic("channel", name))
    await driver.orders.wait_for(of_type(OrderConfirmed, driver.order_id(order)), timeout=60)
    cancel = CancelOrderLines(channel=name, channel_order_id=order.channel_order_id, edit_id="K-1",
                              lines=[Line(sku=sku, quantity=1)])
    await asyncio.to_thread(kcat.run, driver.config, "-P", "-t", driver.config.topic(party_topic("channel", name)),
                            "-K", "\t", "-z", "gzip", principal=channel.name, input=kcat_record(cancel),
                            check=True, timeout=30)
    [edited] = await driver.orders.wait_for(of_type(OrderEdited, driver.order_id(order)))
    assert edited["data"]["lines"][0]["quantity"] == 1


async def test_a_channel_placing_an_order_for_another_channel_is_dead_lettered(driver, party):
    channel = await party("channel", f"t{uuid.uuid4().hex[:8]}")
    name = channel.name.removeprefix("channel-")
    sku = await driver.stocked_sku(2)
    forged, own = (driver.order([(sku, 1)], channel=c) for c in ("web", name))
    async with client(driver.config, "test/channel", principal=channel.name) as sender:
        for order in (forged, own):
            await sender.send(order, topic=party_topic("channel", name))

    await driver.orders.wait_for(of_type(OrderAccepted, driver.order_id(own)), timeout=60)
    [letter] = await driver.dead_letters.wait_for(dead_letter_about(forged.channel_order_id))
    assert letter["data"]["reason"] == "CHANNEL_MISMATCH"
    assert not driver.orders.envelopes(of_type(OrderAccepted, driver.order_id(forged)))
    assert not await driver.count("SELECT count(*) FROM capture.orders WHERE order_id = $1", driver.order_id(forged))


async def test_a_location_reporting_on_another_locations_fulfilment_order_is_dead_lettered(driver, party):
    chosen, other = (driver.unique("LC") for _ in range(2))
    sku = driver.unique("SKU")
    await driver.location(chosen, FRANKFURT)
    await driver.stock(sku, chosen, 1)
    chosen_login, other_login = [await party("location", location) for location in (chosen, other)]
    order = driver.order([(sku, 1)])
    order_id = driver.order_id(order)
    await driver.channel.send(order)
    [work] = await driver.work.wait_for(of_type(FulfillmentRequested, order_id))
    assert work["data"]["location_id"] == chosen

    shipped = LocationUpdate(fulfillment_order_id=work["data"]["fulfillment_order_id"], order_id=order_id,
                             status="shipped", carrier="DHL", tracking_number="FORGED1")
    async with client(driver.config, "test/location", principal=other_login.name) as impostor:
        await impostor.send(shipped, topic=party_topic("location", other))
    [letter] = await driver.dead_letters.wait_for(dead_letter_about(work["data"]["fulfillment_order_id"]),
                                                  timeout=60)
    assert letter["data"]["reason"] == "LOCATION_MISMATCH"
    assert await driver.status(order_id, "confirmed") == "confirmed"
    assert not driver.erp.envelopes(of_type(ShipmentConfirmed, order_id))

    async with client(driver.config, "test/location", principal=chosen_login.name) as location:
        await location.send(shipped.model_copy(update={"tracking_number": "REAL1"}),
                            topic=party_topic("location", chosen))
    [confirmed] = await driver.erp.wait_for(of_type(ShipmentConfirmed, order_id), timeout=60)
    assert confirmed["data"]["tracking_number"] == "REAL1"
    await driver.status(order_id, "shipped")


async def test_a_location_reads_its_work_with_kcat_on_its_own_topic_which_another_location_may_not(
        driver, kcat, party):
    chosen, other = (driver.unique("LC") for _ in range(2))
    chosen_login, other_login = [await party("location", location) for location in (chosen, other)]
    sku = driver.unique("SKU")
    await driver.location(chosen, FRANKFURT)
    await driver.stock(sku, chosen, 1)
    order = driver.order([(sku, 1)])
    await driver.channel.send(order)
    await driver.work.wait_for(of_type(FulfillmentRequested, driver.order_id(order)))

    own_work = f"{FULFILLMENT_WORK}.{chosen}"
    [work] = await asyncio.to_thread(read_as, kcat, driver.config, chosen_login.name, own_work)
    assert work["type"] == FulfillmentRequested.message_type
    assert work["data"]["order_id"] == str(driver.order_id(order)) and work["data"]["location_id"] == chosen
    refused = await asyncio.to_thread(kcat.run, driver.config, "-C", "-t", driver.config.topic(own_work), "-o",
                                      "beginning", "-e", "-q", principal=other_login.name, capture_output=True,
                                      text=True, timeout=30)
    assert refused.returncode != 0 and "Topic authorization failed" in refused.stderr


async def test_a_channel_reads_the_events_of_its_own_orders_on_its_own_topic(driver, kcat, party):
    channel = await party("channel", f"t{uuid.uuid4().hex[:8]}")
    name = channel.name.removeprefix("channel-")
    sku = await driver.stocked_sku(2)
    own, another_channels = driver.order([(sku, 1)], channel=name), driver.order([(sku, 1)])
    async with client(driver.config, "test/channel", principal=channel.name) as sender:
        await sender.send(own, topic=party_topic("channel", name))
    await driver.channel.send(another_channels)
    for order in (own, another_channels):
        await driver.orders.wait_for(of_type(OrderConfirmed, driver.order_id(order)), timeout=60)

    events = await eventually(lambda: asyncio.to_thread(read_as, kcat, driver.config, channel.name,
                                                        f"{ORDER_EVENTS}.{name}", count=2),
                              what=f"{name}'s order events on its own topic")
    assert [e["type"] for e in events] == [OrderAccepted.message_type, OrderConfirmed.message_type]
    assert {e["subject"] for e in events} == {str(driver.order_id(own))}


async def test_work_for_a_location_without_its_topic_waits_until_ops_makes_it_and_holds_up_nobody_else(driver):
    late, sku = driver.unique("LC"), driver.unique("SKU")
    # Registered without its topics (not as ops' tools do it: register_locations).
    await driver.channel.send(RegisterLocation(location_id=late, name=late, kind="warehouse", coordinates=FRANKFURT))
    await eventually(lambda: driver.db.fetchval("SELECT 1 FROM routing.locations WHERE location_id = $1", late),
                     what=f"location {late}")
    await driver.stock(sku, late, 1)
    held_order, flowing_order = driver.order([(sku, 1)]), driver.order([(await driver.stocked_sku(1), 1)])
    await driver.channel.send(held_order)
    held = f"{FULFILLMENT_WORK}.{late}"
    await eventually(lambda: driver.db.fetchval("SELECT reason FROM fulfillment.outbox_parked WHERE topic = $1",
                                                held), what="the work item held")
    await driver.channel.send(flowing_order)
    await driver.work.wait_for(of_type(FulfillmentRequested, driver.order_id(flowing_order)))
    await driver.status(driver.order_id(held_order), "confirmed")
    assert not driver.work.envelopes(of_type(FulfillmentRequested, driver.order_id(held_order)))

    await ensure_party_topics(driver.config, "location", late)
    [work] = await driver.work.wait_for(of_type(FulfillmentRequested, driver.order_id(held_order)), timeout=60)
    assert work["data"]["location_id"] == late
    assert not await driver.count("SELECT count(*) FROM fulfillment.outbox_parked WHERE topic = $1", held)


async def test_oms_ship_plays_a_location_with_a_login_reading_its_work_and_reporting_on_its_own_topics(
        driver, party, capsys):
    location, sku = driver.unique("LC"), driver.unique("SKU")
    login = await party("location", location)
    await driver.location(location, FRANKFURT)
    await driver.stock(sku, location, 1)
    order = driver.order([(sku, 1)])
    await driver.channel.send(order)
    await driver.status(driver.order_id(order), "confirmed")

    assert await cli.ship(f"{order.channel}/{order.channel_order_id}", "DHL", "shipped") == 0
    assert f"as {login.name}" in capsys.readouterr().out
    await driver.status(driver.order_id(order), "shipped")


def read_as(kcat, config, principal: str, topic: str, count: int = 1) -> list[dict] | None:
    """The topic's messages from its start, read by kcat logged in as `principal` (None: fewer than `count`)."""
    read = kcat.run(config, "-C", "-t", config.topic(topic), "-o", "beginning", "-e", "-q", principal=principal,
                    capture_output=True, text=True, timeout=30, check=True)
    envelopes = [json.loads(line) for line in read.stdout.splitlines() if line.strip()]
    return envelopes if len(envelopes) >= count else None


def kcat_record(payload: Contract) -> bytes:
    envelope = wrap(payload, source="kcat/channel", correlation_id=str(uuid.uuid4()))
    return f"{payload.key()}\t{envelope.model_dump_json()}\n".encode()


def dead_letter_about(text: str):
    return lambda e: e["type"] == DeadLetter.message_type and str(text) in e["data"]["detail"]
