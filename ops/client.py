"""A small Kafka client in the role of a sales channel, a location or ERP: publishes commands in envelopes."""

import asyncio
import uuid
from collections.abc import Callable, Iterable
from contextlib import asynccontextmanager, suppress

from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError, OutOfOrderSequenceNumber

from shared.contracts import Contract, Envelope, wrap
from shared.logging import get_logger
from shared.messaging.outbox import make_producer
from shared.messaging.retry import Backoff, is_transient
from shared.settings import OPS_PRINCIPAL, Settings

log = get_logger(__name__)

Message = tuple[str, bytes, bytes | None]  # topic, value, key


# An attempt's longest wait for its acknowledgements, then a new producer and the same envelopes again: the
# broker-restart fault test hung once with its orders stopped half way in this client and the services idle.
ATTEMPT_SECONDS = 20.0


class Client:
    """Sends as a real client would: what the broker did not take — an outage longer than the producer's own
    retries, or a producer whose sequence the broker lost (OutOfOrderSequenceNumber after a broker restart: an
    idempotent producer never recovers from it) — is sent again, the same envelopes, by a new producer, for up to
    `patience` seconds; so is what was under way on a producer another send replaced. Consumers deduplicate by
    envelope id whatever had arrived the first time. What Kafka refuses for good (a message too large, a topic this
    principal may not write) fails at once."""

    def __init__(self, new_producer: Callable[[], AIOKafkaProducer], settings: Settings, source: str,
                 patience: float = 120.0):
        self.new_producer = new_producer
        self.producer = new_producer()
        self.settings = settings
        self.source = source
        self.patience = patience
        self._replacing = asyncio.Lock()

    async def send(self, payload: Contract, correlation_id: str | None = None, topic: str | None = None) -> Envelope:
        """To the payload's topic, or (a channel's or location's own) `topic`."""
        envelope = wrap(payload, source=self.source, correlation_id=correlation_id or str(uuid.uuid4()))
        await self.send_raw(topic or payload.topic, envelope.model_dump_json().encode(), payload.key())
        return envelope

    async def send_many(self, payloads: Iterable[Contract]) -> list[Envelope]:
        payloads = list(payloads)
        envelopes = [wrap(payload, source=self.source, correlation_id=str(uuid.uuid4())) for payload in payloads]
        await self._deliver([(self.settings.topic(payload.topic), envelope.model_dump_json().encode(),
                              payload.key().encode()) for payload, envelope in zip(payloads, envelopes)])
        return envelopes

    async def send_raw(self, topic: str, value: bytes, key: str | None = None) -> None:
        await self._deliver([(self.settings.topic(topic), value, key.encode() if key else None)])

    async def _deliver(self, messages: list[Message]) -> None:
        """Sent in order, every acknowledgement awaited; all of them again after a failure."""
        deadline = asyncio.get_running_loop().time() + self.patience
        backoff = Backoff()
        while True:
            producer = self.producer
            try:
                async with asyncio.timeout(ATTEMPT_SECONDS):
                    deliveries = [await producer.send(topic, value, key) for topic, value, key in messages]
                    for delivery in deliveries:
                        await delivery
                return
            except (KafkaError, TimeoutError) as error:
                # A producer another send replaced meanwhile fails what was under way on it (ProducerClosed).
                replaced = self.producer is not producer
                if not (replaced or _worth_again(error)) or asyncio.get_running_loop().time() >= deadline:
                    raise
                log.warning("client.send_failed", source=self.source, error=repr(error))
            await backoff.sleep()
            await self._replace(producer)

    async def _replace(self, broken: AIOKafkaProducer) -> None:
        """A new producer instead of `broken`, unless another send has replaced it already. If the new one cannot
        start (the broker still away), it stays the current one: the next send fails and replaces it again.
        `broken` is stopped only once the new one is current: the sends still under way on it fail while it
        stops, and must see it replaced to go again."""
        async with self._replacing:
            if self.producer is not broken:
                return
            fresh = self.new_producer()
            with suppress(KafkaError):
                await fresh.start()
            self.producer = fresh
            with suppress(Exception):
                await broken.stop()


def _worth_again(error: KafkaError | TimeoutError) -> bool:
    """An outage, a lost producer sequence, an attempt that never ended; never what Kafka refuses for good (a
    message too large, a topic this principal may not write)."""
    return isinstance(error, TimeoutError) or is_transient(error) or isinstance(error, OutOfOrderSequenceNumber)


@asynccontextmanager
async def client(settings: Settings, source: str, principal: str = OPS_PRINCIPAL):
    """Publishes as `principal`: ops (a super user) unless told to act as a channel, location or ERP."""
    def new_producer() -> AIOKafkaProducer:
        return make_producer(settings.kafka_login(principal), source.replace("/", "-"))

    sender = Client(new_producer, settings, source)
    await sender.producer.start()
    try:
        yield sender
    finally:
        await sender.producer.stop()
