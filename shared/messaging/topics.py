"""Creates the OMS topics if they are missing (idempotent; safe to run from every service at start-up)."""

from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from shared.contracts.topics import ALL_TOPICS, PARTITIONS
from shared.logging import get_logger

log = get_logger(__name__)

TOPIC_ALREADY_EXISTS = 36


async def ensure_topics(bootstrap: str, prefix: str = "", partitions: int = PARTITIONS) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, client_id="oms-topics")
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        missing = [prefix + name for name in ALL_TOPICS if prefix + name not in existing]
        if not missing:
            return
        response = await admin.create_topics(
            [NewTopic(name, num_partitions=partitions, replication_factor=1) for name in missing]
        )
        for name, code, *_ in response.topic_errors:
            if code not in (0, TOPIC_ALREADY_EXISTS):
                raise RuntimeError(f"could not create topic {name}: Kafka error code {code}")
        log.info("topics.created", topics=missing)
    finally:
        await admin.close()


async def delete_topics(bootstrap: str, prefix: str) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, client_id="oms-topics")
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        doomed = [prefix + name for name in ALL_TOPICS if prefix + name in existing]
        if doomed:
            await admin.delete_topics(doomed)
    finally:
        await admin.close()
