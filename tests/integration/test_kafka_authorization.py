"""The broker lets each principal do what its ACLs grant (ops/principals.py) and nothing else, on real Kafka."""

import dataclasses
import subprocess
import uuid

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import (GroupAuthorizationFailedError, KafkaConnectionError, KafkaError,
                             TopicAuthorizationFailedError)

from ops.client import client
from ops.principals import add_party, party_principal, party_topic, remove_user
from ops.waiting import eventually
from shared.contracts.topics import (FULFILLMENT_DROPSHIP_ORDERS, FULFILLMENT_EVENTS, FULFILLMENT_LOCATION_UPDATES,
                                     FULFILLMENT_WORK, INVENTORY_COMMANDS, ORDER_COMMANDS, ORDER_EVENTS)
from shared.messaging.service import consumer_group
from shared.settings import KafkaLogin, Settings, kafka_password_variable

from ..support.kcat import Kcat

TOPIC_AUTHORIZATION_FAILED = 29


def anonymous(config: Settings) -> dict:
    return {"bootstrap_servers": config.kafka_bootstrap, "request_timeout_ms": 5000}


async def test_a_client_without_credentials_can_neither_produce_nor_consume(config):
    producer = AIOKafkaProducer(**anonymous(config))
    with pytest.raises(KafkaConnectionError):
        await producer.start()
    await producer.stop()
    consumer = AIOKafkaConsumer(config.topic(ORDER_EVENTS), **anonymous(config), group_id="anonymous")
    with pytest.raises(KafkaConnectionError):
        await consumer.start()
    await consumer.stop()


async def test_a_wrong_password_is_refused(config):
    login = dataclasses.replace(config.kafka_login("erp"), password="not-the-password")
    producer = AIOKafkaProducer(**login.aiokafka())
    with pytest.raises(KafkaError):
        await producer.start()
    await producer.stop()


@pytest.fixture(scope="module")
async def channel(party):
    return await party("channel", f"t{uuid.uuid4().hex[:8]}")


@pytest.mark.parametrize("topic", [FULFILLMENT_EVENTS, INVENTORY_COMMANDS, ORDER_COMMANDS, f"{ORDER_COMMANDS}.web"])
async def test_a_channel_publishes_on_its_own_topic_only(config, channel, topic):
    async with client(config, "test/channel", principal=channel.name) as sender:
        await sender.send_raw(party_topic("channel", channel.name.removeprefix("channel-")), b"{}")
        with pytest.raises(TopicAuthorizationFailedError):
            await sender.send_raw(topic, b"{}")


async def test_a_location_cannot_read_the_order_events(config, kcat, party):
    name = f"T-{uuid.uuid4().hex[:8].upper()}"
    location = await party("location", name)
    # aiokafka only logs a refused topic and waits; kcat (librdkafka) reports the broker's answer and exits.
    assert read_with_kcat(kcat, config, location.name, f"{FULFILLMENT_WORK}.{name}").returncode == 0  # its own
    refused = read_with_kcat(kcat, config, location.name, ORDER_EVENTS)
    assert refused.returncode != 0 and "Topic authorization failed" in refused.stderr


async def test_a_location_reads_its_own_work_and_purchase_orders_and_not_another_locations(config, kcat, party):
    a, b = (f"T-{uuid.uuid4().hex[:8].upper()}" for _ in range(2))
    location_a, _ = await party("location", a), await party("location", b)
    for topic in (FULFILLMENT_WORK, FULFILLMENT_DROPSHIP_ORDERS):
        assert read_with_kcat(kcat, config, location_a.name, f"{topic}.{a}").returncode == 0
        refused = read_with_kcat(kcat, config, location_a.name, f"{topic}.{b}")
        assert refused.returncode != 0 and "Topic authorization failed" in refused.stderr, topic


async def test_a_channel_reads_its_own_order_events_and_neither_another_channels_nor_the_shared_topic(
        config, kcat, channel, party):
    other = await party("channel", f"t{uuid.uuid4().hex[:8]}")
    own = f"{ORDER_EVENTS}.{channel.name.removeprefix('channel-')}"
    assert read_with_kcat(kcat, config, channel.name, own).returncode == 0
    for topic in (f"{ORDER_EVENTS}.{other.name.removeprefix('channel-')}", ORDER_EVENTS):
        refused = read_with_kcat(kcat, config, channel.name, topic)
        assert refused.returncode != 0 and "Topic authorization failed" in refused.stderr, topic


async def test_a_service_cannot_join_another_services_consumer_group(config):
    own_topic = config.topic(INVENTORY_COMMANDS)  # inventory may read it; capture's group name is what is refused
    with pytest.raises(GroupAuthorizationFailedError):
        await join_group(config.kafka_login("inventory"), own_topic, consumer_group("capture", INVENTORY_COMMANDS))


async def test_only_ops_creates_topics(config):
    admin = AIOKafkaAdminClient(**config.kafka_login("capture").aiokafka())
    await admin.start()
    try:
        response = await admin.create_topics([NewTopic(config.topic("capture.own.v1"), 1, 1)])
    finally:
        await admin.close()
    assert [code for _, code, *_ in response.topic_errors] == [TOPIC_AUTHORIZATION_FAILED]


async def test_a_location_added_gets_its_own_topic_and_loses_its_rights_when_removed(config, kcat, monkeypatch):
    name = f"T-{uuid.uuid4().hex[:8].upper()}"
    own_topic = party_topic("location", name)
    password = uuid.uuid4().hex
    location = party_principal("location", name)
    monkeypatch.setenv(kafka_password_variable(location.name), password)
    await add_party(config, "location", name, password)
    try:
        assert location.writes == (own_topic,) and location.reads == (f"{FULFILLMENT_WORK}.{name}",
                                                                       f"{FULFILLMENT_DROPSHIP_ORDERS}.{name}")
        # A new SCRAM user reaches the broker's credential cache through the metadata log: a moment later.
        await eventually(lambda: can_publish(config, location.name, own_topic),
                         what=f"{location.name} to publish location updates")
        assert not await can_publish(config, location.name, FULFILLMENT_LOCATION_UPDATES)  # the shared one: ops'
        assert "Topic authorization failed" in read_with_kcat(kcat, config, location.name, ORDER_EVENTS).stderr
    finally:
        await remove_user(config, location.name)
    await eventually(lambda: refused(config, location.name, own_topic), what=f"{location.name} to be refused")


async def can_publish(config: Settings, principal: str, topic: str) -> bool:
    try:
        async with client(config, "test/location", principal=principal) as sender:
            await sender.send_raw(topic, b"{}")
        return True
    except KafkaError:
        return False


async def refused(config: Settings, principal: str, topic: str) -> bool:
    return not await can_publish(config, principal, topic)


def read_with_kcat(kcat: Kcat, config: Settings, principal: str, topic: str) -> subprocess.CompletedProcess:
    """Reads the topic from the beginning to its end, without a consumer group."""
    return kcat.run(config, "-C", "-t", config.topic(topic), "-o", "beginning", "-e", "-q", principal=principal,
                    capture_output=True, text=True, timeout=30)


async def join_group(login: KafkaLogin, topic: str, group: str) -> None:
    consumer = AIOKafkaConsumer(topic, **login.aiokafka(), group_id=group, enable_auto_commit=False)
    try:
        await consumer.start()  # may already be refused here
        await consumer.getmany(timeout_ms=2000)
    finally:
        await consumer.stop()
