"""OMS_KAFKA_TLS=1: a broker of its own, started by deploy/kafka.sh beside the shared one, serves its client
listener as SASL_SSL with the dev CA's certificate; every kind of client connects over TLS through the one
login (shared/settings.py: KafkaLogin) and verifies the broker, and no client gets in without it."""

import dataclasses
import logging
import os
import subprocess
import uuid
from pathlib import Path

import asyncpg
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.errors import KafkaConnectionError

from ops.client import client
from ops.env import ROOT
from ops.prepare import prepare
from ops.waiting import eventually
from shared.contracts.inventory import ReceiveStock, StockReceived
from shared.contracts.topics import INVENTORY_EVENTS
from shared.messaging.service import consumer_group
from shared.messaging.topics import require_topics
from shared.settings import KafkaLogin, Settings

from ..support.kcat import Kcat
from ..support.services import running
from ..support.topics import TopicWatcher, of_type

pytestmark = pytest.mark.integration

# Beside the shared broker (19092/19093), below the ephemeral range (deploy/lib.sh).
PORT, CONTROLLER_PORT = 19192, 19193


@pytest.fixture(scope="module")
def broker_state(tmp_path_factory) -> Path:
    """A TLS broker's state directory (data, dev CA); the broker runs while the module's tests do."""
    state = tmp_path_factory.mktemp("kafka-tls-state")
    env = dict(os.environ, OMS_STATE_DIR=str(state), OMS_KAFKA_TLS="1", OMS_KAFKA_PORT=str(PORT),
               OMS_KAFKA_CONTROLLER_PORT=str(CONTROLLER_PORT), OMS_KAFKA_BOOTSTRAP=f"127.0.0.1:{PORT}")
    kafka = str(ROOT / "deploy" / "kafka.sh")
    subprocess.run([kafka, "start"], env=env, check=True)
    try:
        yield state
    finally:
        subprocess.run([kafka, "stop"], env=env, check=True)


@pytest.fixture(scope="module")
async def tls(config, broker_state) -> Settings:
    """Settings for the TLS broker, prepared: its topics and ACLs, and a database of its own, so that a service
    here and the session's services (on the other broker) never relay each other's outbox rows."""
    tls = Settings(kafka_bootstrap=f"127.0.0.1:{PORT}", kafka_tls=True,
                   kafka_ca_file=broker_state / "kafka" / "tls" / "ca.crt", pg_database=f"{config.pg_database}_tls")
    await prepare(tls)
    # The ACLs just granted reach the broker's authorizer a moment later.
    for principal in ("inventory", "capture"):
        await require_topics(tls.kafka_login(principal), [tls.topic(INVENTORY_EVENTS)])
    yield tls
    conn = await asyncpg.connect(tls.admin_dsn("postgres"))
    await conn.execute(f'DROP DATABASE IF EXISTS "{tls.pg_database}" WITH (FORCE)')
    await conn.close()


def test_the_dev_ca_is_kept_with_the_broker_and_its_keys_are_private(broker_state):
    tls_dir = broker_state / "kafka" / "tls"
    for key in ("ca.key", "broker.pem"):
        assert (tls_dir / key).stat().st_mode & 0o077 == 0, f"{key} is readable by others"
    verified = subprocess.run(["openssl", "verify", "-CAfile", tls_dir / "ca.crt", "-verify_ip", "127.0.0.1",
                               tls_dir / "broker.crt"], capture_output=True, text=True)
    assert verified.returncode == 0, verified.stderr


async def test_a_message_round_trips_over_tls_with_the_services_logins_and_acls(tls):
    topic, value = tls.topic(INVENTORY_EVENTS), f"aiokafka-{uuid.uuid4()}".encode()
    inventory, capture = tls.kafka_login("inventory"), tls.kafka_login("capture")
    assert inventory.aiokafka()["security_protocol"] == "SASL_SSL"
    producer = AIOKafkaProducer(**inventory.aiokafka())
    await producer.start()
    try:
        sent = await producer.send_and_wait(topic, value)
    finally:
        await producer.stop()
    consumer = AIOKafkaConsumer(topic, **capture.aiokafka(), group_id=consumer_group("capture", "tls-test"),
                                auto_offset_reset="earliest", enable_auto_commit=False)
    await consumer.start()
    try:
        record = await eventually(lambda: next_record_with(consumer, value), what="the record over TLS")
    finally:
        await consumer.stop()
    assert (record.partition, record.offset) == (sent.partition, sent.offset)


async def next_record_with(consumer: AIOKafkaConsumer, value: bytes):
    batches = await consumer.getmany(timeout_ms=500)
    return next((r for records in batches.values() for r in records if r.value == value), None)


def test_kcat_produces_and_consumes_over_sasl_ssl_with_the_ca(tls, kcat: Kcat):
    login = tls.kafka_login().librdkafka()
    assert login["security.protocol"] == "SASL_SSL" and login["ssl.ca.location"] == str(tls.kafka_ca_file)
    topic, value = tls.topic(INVENTORY_EVENTS), f"kcat-{uuid.uuid4()}"
    produced = kcat.run(tls, "-P", "-t", topic, input=value + "\n", capture_output=True, text=True, timeout=30)
    assert produced.returncode == 0, produced.stderr
    consumed = kcat.run(tls, "-C", "-t", topic, "-o", "beginning", "-e", "-q", capture_output=True, text=True,
                        timeout=30)
    assert consumed.returncode == 0, consumed.stderr
    assert value in consumed.stdout.splitlines()


async def test_a_client_without_tls_is_refused(tls, caplog):
    plain = dataclasses.replace(tls.kafka_login(), ca_file=None)
    assert plain.security_protocol == "SASL_PLAINTEXT"
    await assert_cannot_connect(plain, caplog, f"Connection at 127.0.0.1:{PORT} closed")


async def test_a_client_that_does_not_trust_the_dev_ca_is_refused(tls, caplog, tmp_path):
    other_ca = tmp_path / "other-ca.crt"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                    "-keyout", tmp_path / "other-ca.key", "-out", other_ca, "-days", "1", "-subj", "/CN=another CA"],
                   check=True, capture_output=True)
    await assert_cannot_connect(dataclasses.replace(tls.kafka_login(), ca_file=other_ca), caplog,
                                "CERTIFICATE_VERIFY_FAILED")


async def assert_cannot_connect(login: KafkaLogin, caplog, reason: str) -> None:
    producer = AIOKafkaProducer(**login.aiokafka(), request_timeout_ms=5000)
    with caplog.at_level(logging.ERROR, logger="aiokafka"), pytest.raises(KafkaConnectionError):
        await producer.start()
    await producer.stop()
    assert reason in caplog.text


async def test_the_inventory_service_applies_a_command_over_tls(tls, broker_state, tmp_path):
    sku = f"TLS-{uuid.uuid4().hex[:8].upper()}"
    # The service is given only the switch: the CA is found where kafka.sh keeps it, under the state directory.
    env = {"OMS_KAFKA_BOOTSTRAP": tls.kafka_bootstrap, "OMS_KAFKA_TLS": "1", "OMS_STATE_DIR": str(broker_state),
           "OMS_PG_DATABASE": tls.pg_database}
    async with (running(("inventory",), tmp_path / "run", env),
                client(tls, "test/erp", principal="erp") as erp, TopicWatcher(tls, INVENTORY_EVENTS) as events):
        await erp.send(ReceiveStock(receipt_id=f"r-{sku}", sku=sku, location_id="WH-1", quantity=7))
        await events.wait_for(of_type(StockReceived, sku))
    conn = await asyncpg.connect(tls.admin_dsn())
    try:
        assert await conn.fetchval("SELECT on_hand FROM inventory.sku_stock WHERE sku = $1", sku) == 7
    finally:
        await conn.close()
