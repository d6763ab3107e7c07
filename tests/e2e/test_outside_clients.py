"""Outside clients with the settings a channel or a location would be given: their own SCRAM credentials, their
own topic, nothing else; and what the OMS does when one speaks for another."""

import asyncio
import uuid

from ops.client import client
from ops.principals import party_topic
from shared.contracts import Contract, wrap
from shared.contracts.fulfillment import FulfillmentRequested, LocationUpdate, ShipmentConfirmed
from shared.contracts.ops import DeadLetter
from shared.contracts.orders import OrderAccepted

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


def kcat_record(payload: Contract) -> bytes:
    envelope = wrap(payload, source="kcat/channel", correlation_id=str(uuid.uuid4()))
    return f"{payload.key()}\t{envelope.model_dump_json()}\n".encode()


def dead_letter_about(text: str):
    return lambda e: e["type"] == DeadLetter.message_type and str(text) in e["data"]["detail"]
