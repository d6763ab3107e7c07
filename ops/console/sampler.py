"""What the console samples every few seconds, kept in memory for the last hour: end offsets of every topic of
this OMS, the committed offsets of every service's consumer groups and each group's state and members (Kafka
admin API, as ops: which instance owns which partitions), each service's /health/ready, and from the database
(read-only role) each service's outbox backlog and oldest row, the sagas past their deadline and the latest
dead letters. The topics page and the alerts are computed from it."""

import asyncio
import os
import time
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import asyncpg
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.coordinator.protocol import ConsumerProtocolMemberAssignment
from aiokafka.errors import for_code
from aiokafka.protocol.admin import DescribeGroupsRequest_v1, DescribeGroupsRequest_v2
from aiokafka.protocol.api import Request

from ops import health
from ops.processes import ServiceProcess
from shared.contracts.topics import ALL_TOPICS, PARTITIONS
from shared.db.bootstrap import SERVICES
from shared.logging import get_logger
from shared.messaging.outbox import backlog_sql
from shared.messaging.retry import run_forever
from shared.messaging.service import consumer_group_prefix
from shared.settings import Settings

from . import model
from .model import GroupState, Member

log = get_logger(__name__)


@dataclass(frozen=True)
class GroupLag:
    group: str
    service: str
    topic: str
    partition: int
    committed: int | None
    end: int
    lag: int


@dataclass
class Sample:
    at: float  # monotonic
    taken_at: datetime
    ends: dict[str, dict[int, int]] = field(default_factory=dict)  # topic -> partition -> end offset
    lags: list[GroupLag] = field(default_factory=list)
    groups: list[GroupState] = field(default_factory=list)
    readiness: dict[str, tuple[bool, list[str]]] = field(default_factory=dict)
    outbox: dict[str, tuple[int, float | None]] = field(default_factory=dict)  # service -> backlog, oldest age
    sagas_past_deadline: tuple[int, float | None] = (0, None)  # count, the oldest's seconds past
    dead_letters_at: list[datetime] = field(default_factory=list)  # the last hour's
    problems: list[str] = field(default_factory=list)  # what could not be sampled this time


@dataclass
class History:
    """The samples' numbers as series, for rates and sparklines: topic in/out, group lag, outbox backlog."""
    produced: dict[str, model.Series] = field(default_factory=lambda: defaultdict(model.Series))
    consumed: dict[str, model.Series] = field(default_factory=lambda: defaultdict(model.Series))
    rate_in: dict[str, model.Series] = field(default_factory=lambda: defaultdict(model.Series))
    rate_out: dict[str, model.Series] = field(default_factory=lambda: defaultdict(model.Series))
    lag: dict[str, model.Series] = field(default_factory=lambda: defaultdict(model.Series))
    outbox: dict[str, model.Series] = field(default_factory=lambda: defaultdict(model.Series))
    alerts: list[model.Alert] = field(default_factory=list)
    conditions_since: dict[tuple[str, str], float] = field(default_factory=dict)

    def add(self, sample: Sample, previous: Sample | None) -> None:
        produced = {topic: sum(ends.values()) for topic, ends in sample.ends.items()}
        consumed: dict[str, int] = defaultdict(int)
        group_lag: dict[str, int] = defaultdict(int)
        for row in sample.lags:
            consumed[row.topic] += row.committed or 0
            group_lag[f"{row.group} {row.topic}"] += row.lag
        if previous is not None:
            seconds = sample.at - previous.at
            before_in = {t: s.latest() for t, s in self.produced.items() if s.latest() is not None}
            before_out = {t: s.latest() for t, s in self.consumed.items() if s.latest() is not None}
            for topic, value in model.rate(before_in, produced, seconds).items():
                self.rate_in[topic].add(sample.at, value)
            for topic, value in model.rate(before_out, consumed, seconds).items():
                self.rate_out[topic].add(sample.at, value)
        for topic, total in produced.items():
            self.produced[topic].add(sample.at, total)
        for topic, total in consumed.items():
            self.consumed[topic].add(sample.at, total)
        for key, total in group_lag.items():
            self.lag[key].add(sample.at, total)
        for service, (backlog, _) in sample.outbox.items():
            self.outbox[service].add(sample.at, backlog)
        self.alerts = model.held(self._conditions(sample), self.conditions_since, sample.at)

    def _conditions(self, sample: Sample) -> list[model.Alert]:
        """The conditions of deploy/prometheus/alerts.yml that hold in this sample and the history before it."""
        found = [model.lag_growing(key, series, sample.at) for key, series in self.lag.items()]
        found.append(model.dead_letters_recent(sample.dead_letters_at, sample.taken_at))
        found.append(model.sagas_past_deadline(sample.sagas_past_deadline[1], sample.sagas_past_deadline[0]))
        found += [model.outbox_stale(service, oldest) for service, (_, oldest) in sample.outbox.items()]
        found += [model.not_ready(service, ready, problems) for service, (ready, problems) in sample.readiness.items()]
        return [alert for alert in found if alert]


def ours(topic: str, prefix: str) -> str | None:
    """The topic's name without this OMS's prefix, if it is one of ours (a shared topic or a party's own)."""
    if not topic.startswith(prefix):
        return None
    name = topic[len(prefix):]
    return name if any(name == t or name.startswith(t + ".") for t in ALL_TOPICS) else None


def service_of_group(group: str, prefix: str) -> str | None:
    for service in SERVICES:
        if group.startswith(prefix + consumer_group_prefix(service)):
            return service
    return None


def service_urls(run_dir: Path) -> dict[str, str | None]:
    """Where each service answers /health/ready: OMS_CONSOLE_SERVICE_URLS (`name=url,...`, docker compose), else
    the port files the supervisor or the tests wrote in the run directory."""
    given = os.environ.get("OMS_CONSOLE_SERVICE_URLS")
    if given:
        return dict(pair.split("=", 1) for pair in given.split(",") if "=" in pair)
    return {service: ServiceProcess(service, run_dir).url() for service in SERVICES}


def group_lags(group: str, prefix: str, committed: dict, ends: dict[str, dict[int, int]]) -> list[GroupLag]:
    """A group's lag on every partition of the topics it committed on, and of the topic its name says it reads
    (all of it, before its first commit)."""
    service = service_of_group(group, prefix)
    by_topic: dict[str, dict[int, int | None]] = defaultdict(dict)
    for tp, offset in committed.items():
        by_topic[tp.topic][tp.partition] = offset.offset if offset.offset >= 0 else None
    named = prefix + group[len(prefix) + len(consumer_group_prefix(service)):]
    if named in ends:
        by_topic.setdefault(named, {})
    return [GroupLag(group[len(prefix):], service, topic[len(prefix):], partition, offsets.get(partition),
                     ends[topic][partition], behind)
            for topic, offsets in sorted(by_topic.items()) if topic in ends
            for partition, behind in model.lag(offsets, ends[topic]).items()]


class DescribeGroups(Request[DescribeGroupsRequest_v1 | DescribeGroupsRequest_v2]):
    """DescribeGroups at v2 at most: aiokafka 0.14 decodes a v3 answer with v2's schema and fails on it."""
    API_KEY = 15

    def __init__(self, groups: list[str]):
        self.groups = groups

    def build(self, request_struct_class):
        return request_struct_class(self.groups)


STATIC_MEMBER_SUFFIX = len("-00000000-0000-0000-0000-000000000000")  # the broker appends a UUID to the member id


def member(group: str, prefix: str, member_id: str, client_id: str, host: str, assignment: bytes) -> Member:
    """A member as described by the broker. A static member's id is its group instance id (`<group>-<instance
    number>`, shared/messaging/service.py) and a UUID; another's starts with its client id."""
    name = member_id[:-STATIC_MEMBER_SUFFIX] if len(member_id) > STATIC_MEMBER_SUFFIX else member_id
    instance = name[len(group) + 1:] if name.startswith(group + "-") else name
    owned = ConsumerProtocolMemberAssignment.decode(assignment).assignment if assignment else []
    return Member(instance, client_id, host.lstrip("/"),
                  tuple(sorted((topic[len(prefix):], p) for topic, partitions in owned for p in partitions)))


async def describe_groups(admin: AIOKafkaAdminClient, groups: list[str], prefix: str) -> list[GroupState]:
    by_node: dict[int, list[str]] = defaultdict(list)
    for group in groups:
        by_node[await admin.find_coordinator(group)].append(group)
    found = []
    for node, asked in by_node.items():
        answer = await admin._send_request(DescribeGroups(asked), node)
        for error, group, state, _, _, members in answer.groups:
            if error:
                raise for_code(error)(f"describing {group}")
            found.append(GroupState(group[len(prefix):], service_of_group(group, prefix), state,
                                    tuple(member(group, prefix, member_id, client_id, host, assignment)
                                          for member_id, client_id, host, _, assignment in members)))
    return sorted(found, key=lambda g: g.group)


class Sampler:
    def __init__(self, settings: Settings, run_dir: Path, every: float):
        self.settings, self.run_dir, self.every = settings, run_dir, every
        self.latest: Sample | None = None
        self.history = History()
        self.changed = asyncio.Condition()
        self._consumer: AIOKafkaConsumer | None = None
        self._admin: AIOKafkaAdminClient | None = None
        self._pool: asyncpg.Pool | None = None

    async def run(self) -> None:
        await run_forever("console-sampler", self._loop)

    async def _loop(self) -> None:
        while True:
            sample = await self.take()
            self.history.add(sample, self.latest)
            self.latest = sample
            async with self.changed:
                self.changed.notify_all()
            await asyncio.sleep(self.every)

    async def take(self) -> Sample:
        sample = Sample(time.monotonic(), datetime.now(UTC))
        for part in (self._kafka, self._readiness, self._database):
            try:
                await part(sample)
            except Exception as error:  # one part failing (broker or database down) still shows the rest
                sample.problems.append(f"{part.__name__.strip('_')}: {error!r}"[:300])
                log.warning("console.sample_failed", part=part.__name__, error=repr(error)[:300])
                await self._reset(part)
        return sample

    async def _kafka(self, sample: Sample) -> None:
        consumer, admin = await self._kafka_clients()
        prefix = self.settings.topic_prefix
        topics = sorted(t for t in await consumer.topics() if ours(t, prefix))
        partitions = [TopicPartition(t, p) for t in topics for p in range(PARTITIONS)]  # every topic has as many
        ends = await consumer.end_offsets(partitions) if partitions else {}
        for tp, end in ends.items():
            sample.ends.setdefault(tp.topic, {})[tp.partition] = end
        groups = [g for g, *_ in await admin.list_consumer_groups() if service_of_group(g, prefix)]
        for group in sorted(groups):
            sample.lags += group_lags(group, prefix, await admin.list_consumer_group_offsets(group), sample.ends)
        sample.groups = await describe_groups(admin, groups, prefix) if groups else []
        sample.ends = {topic[len(prefix):]: ends for topic, ends in sample.ends.items()}

    async def _readiness(self, sample: Sample) -> None:
        urls = service_urls(self.run_dir)
        answers = await asyncio.gather(*(asyncio.to_thread(health.readiness, url) for url in urls.values()))
        sample.readiness = dict(zip(urls, answers))

    async def _database(self, sample: Sample) -> None:
        pool = await self._database_pool()
        rows = await pool.fetch(" UNION ALL ".join(
            f"SELECT '{s}' AS service, {backlog_sql(f'{s}.outbox')}, "
            f"(SELECT array_agg(failed_at) FROM {s}.dead_letters WHERE failed_at > now() - interval '1 hour') "
            f"AS dead_letters" for s in SERVICES))
        for row in rows:
            sample.outbox[row["service"]] = (row["backlog"], row["oldest"])
            sample.dead_letters_at += row["dead_letters"] or []
        sample.sagas_past_deadline = tuple(await pool.fetchrow(
            "SELECT count(*), extract(epoch FROM now() - min(deadline_at))::float8 FROM capture.order_sagas "
            "WHERE deadline_at < now()"))

    async def _kafka_clients(self) -> tuple[AIOKafkaConsumer, AIOKafkaAdminClient]:
        if self._consumer is None:
            login = self.settings.kafka_login().aiokafka()
            self._consumer = AIOKafkaConsumer(**login, enable_auto_commit=False, metadata_max_age_ms=10_000)
            await self._consumer.start()
            self._admin = AIOKafkaAdminClient(**login)
            await self._admin.start()
        return self._consumer, self._admin

    async def _database_pool(self) -> asyncpg.Pool:
        if self._pool is None:
            self._pool = await asyncpg.create_pool(self.settings.reader_dsn(), min_size=1, max_size=4,
                                                   command_timeout=10)
        return self._pool

    async def _reset(self, part) -> None:
        """Clients are made anew after a failure: a broker restart can leave one unusable."""
        if part == self._kafka and self._consumer is not None:
            consumer, admin, self._consumer, self._admin = self._consumer, self._admin, None, None
            for closing in (consumer.stop(), admin.close()):
                try:
                    await closing
                except Exception:
                    pass
