"""A small Kafka client in the role of a sales channel, a location or ERP: publishes commands in envelopes."""

import uuid
from collections.abc import Iterable
from contextlib import asynccontextmanager

from aiokafka import AIOKafkaProducer

from shared.contracts import Contract, Envelope, wrap
from shared.messaging.outbox import make_producer
from shared.settings import OPS_PRINCIPAL, Settings


class Client:
    def __init__(self, producer: AIOKafkaProducer, settings: Settings, source: str):
        self.producer = producer
        self.settings = settings
        self.source = source

    async def send(self, payload: Contract, correlation_id: str | None = None, topic: str | None = None) -> Envelope:
        """To the payload's topic, or (a channel's or location's own) `topic`."""
        envelope = wrap(payload, source=self.source, correlation_id=correlation_id or str(uuid.uuid4()))
        await self.send_raw(topic or payload.topic, envelope.model_dump_json().encode(), payload.key())
        return envelope

    async def send_many(self, payloads: Iterable[Contract]) -> list[Envelope]:
        envelopes, deliveries = [], []
        for payload in payloads:
            envelope = wrap(payload, source=self.source, correlation_id=str(uuid.uuid4()))
            envelopes.append(envelope)
            deliveries.append(await self.producer.send(self.settings.topic(payload.topic),
                                                       envelope.model_dump_json().encode(), payload.key().encode()))
        for delivery in deliveries:
            await delivery
        return envelopes

    async def send_raw(self, topic: str, value: bytes, key: str | None = None) -> None:
        await self.producer.send_and_wait(self.settings.topic(topic), value, key.encode() if key else None)


@asynccontextmanager
async def client(settings: Settings, source: str, principal: str = OPS_PRINCIPAL):
    """Publishes as `principal`: ops (a super user) unless told to act as a channel, location or ERP."""
    producer = make_producer(settings.kafka_login(principal), source.replace("/", "-"))
    await producer.start()
    try:
        yield Client(producer, settings, source)
    finally:
        await producer.stop()
