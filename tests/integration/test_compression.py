"""Compressed batches reach the inventory service as a process on real Kafka: every codec Kafka supports,
written by aiokafka and by a producer we did not write (librdkafka, through kcat). Each compressed batch is
followed by a plain message on the same partition, which is processed only if the consumer moved past it."""

import uuid

import pytest
from aiokafka import AIOKafkaProducer

from shared.contracts import wrap
from shared.contracts.inventory import ReceiveStock, StockReceived
from shared.contracts.topics import INVENTORY_COMMANDS, INVENTORY_EVENTS

from ..support.kcat import Kcat
from ..support.services import running
from ..support.topics import TopicWatcher, of_type

pytestmark = pytest.mark.integration

CODECS = ("none", "gzip", "snappy", "lz4", "zstd")
RECORDS_PER_BATCH = 5
PARTITION = 0  # one partition, and a long linger, so the records share one batch
LINGER_MS = 200


@pytest.fixture(scope="module")
async def inventory_service(config, tmp_path_factory):
    async with running(("inventory",), tmp_path_factory.mktemp("run")) as procs:
        yield procs["inventory"]


def receipts(label: str, count: int = RECORDS_PER_BATCH) -> list[ReceiveStock]:
    run = uuid.uuid4().hex[:8].upper()
    return [ReceiveStock(receipt_id=f"r-{run}-{i}", sku=f"{label.upper()}-{run}-{i}", location_id="WH-1",
                         quantity=i + 1)
            for i in range(count)]


def encoded(receipt: ReceiveStock) -> bytes:
    return wrap(receipt, source="test/erp", correlation_id=str(uuid.uuid4())).model_dump_json().encode()


async def produce_with_aiokafka(config, codec: str, batch: list[ReceiveStock]) -> None:
    producer = AIOKafkaProducer(**config.kafka_login().aiokafka(), linger_ms=LINGER_MS,
                                compression_type=None if codec == "none" else codec)
    await producer.start()
    try:
        deliveries = [await producer.send(config.topic(INVENTORY_COMMANDS), encoded(r), r.key().encode(),
                                          partition=PARTITION)
                      for r in batch]
        for delivery in deliveries:
            await delivery
    finally:
        await producer.stop()


def produce_with_kcat(kcat: Kcat, config, codec: str, batch: list[ReceiveStock]) -> None:
    lines = b"".join(r.key().encode() + b"\t" + encoded(r) + b"\n" for r in batch)
    kcat.run(config, "-P", "-t", config.topic(INVENTORY_COMMANDS), "-p", str(PARTITION), "-K", "\t",
             "-X", f"compression.codec={codec}", "-X", f"linger.ms={LINGER_MS}", input=lines, check=True, timeout=30)


async def assert_all_received_and_consumer_moves_on(config, admin, batch: list[ReceiveStock]) -> None:
    [after] = receipts("after", count=1)
    await produce_with_aiokafka(config, "none", [after])
    async with TopicWatcher(config, INVENTORY_EVENTS) as events:
        for receipt in [*batch, after]:
            await events.wait_for(of_type(StockReceived, receipt.sku), what=f"StockReceived for {receipt.sku}")
    on_hand = dict(await admin.fetch("SELECT sku, on_hand FROM inventory.sku_stock WHERE sku = ANY($1::text[])",
                                     [r.sku for r in batch]))
    assert on_hand == {r.sku: r.quantity for r in batch}


@pytest.mark.parametrize("codec", CODECS)
async def test_a_batch_compressed_by_aiokafka_is_consumed(config, admin, inventory_service, codec):
    batch = receipts(codec)
    await produce_with_aiokafka(config, codec, batch)
    await assert_all_received_and_consumer_moves_on(config, admin, batch)


@pytest.mark.parametrize("codec", CODECS)
async def test_a_batch_compressed_by_librdkafka_is_consumed(config, admin, inventory_service, kcat, codec):
    batch = receipts(codec)
    produce_with_kcat(kcat, config, codec, batch)
    await assert_all_received_and_consumer_moves_on(config, admin, batch)
