"""Creates the OMS topics if they are missing (idempotent), as ops: `oms prepare` does, never a service. A service
only checks at start-up that the topics it uses are there."""

import asyncio
from collections.abc import Iterable

from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from shared.contracts.topics import COMPACTED_TOPICS, PARTITIONS, SHARED_TOPICS
from shared.logging import get_logger
from shared.settings import KafkaLogin, Settings

log = get_logger(__name__)

TOPIC_ALREADY_EXISTS = 36


class MissingTopics(RuntimeError):
    pass


async def ensure_topics(settings: Settings, prefix: str | None = None, partitions: int = PARTITIONS,
                        names: Iterable[str] = SHARED_TOPICS) -> None:
    prefix = settings.topic_prefix if prefix is None else prefix
    admin = AIOKafkaAdminClient(**settings.kafka_login().aiokafka(), client_id="oms-topics")
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        missing = [prefix + name for name in names if prefix + name not in existing]
        if not missing:
            return
        response = await admin.create_topics(
            [NewTopic(name, num_partitions=partitions, replication_factor=1,
                      topic_configs=topic_configuration(name.removeprefix(prefix), settings.topic_retention_days))
             for name in missing]
        )
        for name, code, *_ in response.topic_errors:
            if code not in (0, TOPIC_ALREADY_EXISTS):
                raise RuntimeError(f"could not create topic {name}: Kafka error code {code}")
        await _wait_for_leaders(admin, missing)
        log.info("topics.created", topics=missing)
    finally:
        await admin.close()


def topic_configuration(topic: str, retention_days: float) -> dict[str, str]:
    """The configs a topic is created with (here and in the Kubernetes KafkaTopics, ops/k8s.py)."""
    if topic in COMPACTED_TOPICS:
        return {"cleanup.policy": "compact", "retention.ms": "-1"}
    return {"retention.ms": str(int(retention_days * 86_400_000))}


async def require_topics(login: KafkaLogin, names: Iterable[str], timeout: float = 30.0) -> None:
    """Fails unless every topic is there and visible to this principal (the metadata lists no other) within the
    timeout: ACLs that `oms prepare` has just created reach the broker's authorizer a moment later."""
    admin = AIOKafkaAdminClient(**login.aiokafka(), client_id=f"oms-{login.username}-topics")
    await admin.start()
    deadline = asyncio.get_running_loop().time() + timeout
    try:
        while missing := sorted(set(names) - set(await admin.list_topics())):
            if asyncio.get_running_loop().time() > deadline:
                raise MissingTopics(f"topics missing, or not granted to {login.username}: {missing} "
                                    "(run `oms prepare`)")
            await asyncio.sleep(0.5)
    finally:
        await admin.close()


async def _wait_for_leaders(admin: AIOKafkaAdminClient, topics: list[str], timeout: float = 30.0) -> None:
    """New partitions need a moment to get a leader; producing before that only earns retries and warnings."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        described = await admin.describe_topics(topics)
        if all(t["error_code"] == 0 and t["partitions"] and all(p["leader"] >= 0 for p in t["partitions"])
               for t in described):
            return
        if asyncio.get_running_loop().time() > deadline:
            raise TimeoutError(f"topics without partition leaders after {timeout}s: {topics}")
        await asyncio.sleep(0.1)


async def delete_topics(settings: Settings, prefix: str | None = None, names: Iterable[str] | None = None) -> None:
    """The named topics, or (a test run's) every topic whose name starts with the prefix, parties' included."""
    prefix = settings.topic_prefix if prefix is None else prefix
    admin = AIOKafkaAdminClient(**settings.kafka_login().aiokafka(), client_id="oms-topics")
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        if names is None and not prefix:
            raise ValueError("refusing to delete every topic of an unprefixed deployment")
        doomed = ([prefix + name for name in names if prefix + name in existing] if names is not None
                  else [topic for topic in existing if topic.startswith(prefix)])
        if doomed:
            await admin.delete_topics(doomed)
    finally:
        await admin.close()
