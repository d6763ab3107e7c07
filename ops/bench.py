"""`oms bench`: sustained throughput and end-to-end latency of the order pipeline, next to a bare baseline.

Measured from the channel's side: an order counts when its OrderConfirmed (fulfilment requested) is seen on
the order events topic. The same run measures the bare pipeline (ops/baseline.py): the confirm path's seven
Kafka hops and their Postgres transactions with no business logic, so OMS / baseline tells how close the OMS is
to what this machine allows. Two phases each: saturation (publish as fast as possible: throughput), then a
steady rate at half the measured throughput (latency percentiles). Each process of both systems is charged the
CPU it used (/proc) in the saturation phase until the processes are idle again, per order: where a change moved
time (ops/cpu.py).

`--private` runs the bench against an OMS of its own started from this checkout (a fresh database and topic
prefix on the running Kafka and Postgres, `--instances` of each service), removed afterwards.
"""

import asyncio
import json
import os
import platform
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass
from pathlib import Path

import asyncpg
from aiokafka import AIOKafkaConsumer, TopicPartition

from services.capture.validation import order_id_for
from shared.contracts import wrap
from shared.contracts.orders import OrderConfirmed, PlaceOrder
from shared.contracts.topics import ORDER_EVENTS, PARTITIONS
from shared.db.bootstrap import SERVICES
from shared.messaging.topics import delete_topics, ensure_topics
from shared.settings import Settings

from . import baseline, cpu, health, load
from .client import Client, client
from .env import ROOT, state_dir
from .prepare import discard_topics, prepare
from .processes import MailSinkProcess, ServiceProcess, free_port
from .waiting import eventually

@dataclass
class Result:
    orders: int
    seconds: float
    latencies_ms: list[float]

    @property
    def throughput(self) -> float:
        return self.orders / self.seconds

    def percentile(self, p: float) -> float:
        return statistics.quantiles(self.latencies_ms, n=100, method="inclusive")[p - 1]


@dataclass(frozen=True)
class Statement:
    calls: float
    milliseconds: float  # executing, waits for locks included
    blocks: float  # shared buffers hit or read
    query: str


@dataclass
class Measured:
    saturated: Result
    steady: Result
    cpu: cpu.CpuPerOrder
    database: dict[str, float]  # per order: commits, and rows written per schema
    idle_cores: float  # what the processes used with no orders in flight, taken off `cpu`
    statements: list[Statement]  # the database's costliest statements in the window, per order
    # Both over the saturation phase and what it left to do: per order at full batches, what the capacity model
    # needs, and least disturbed by idle polling or by others' work slowing the run down.


class Meter:
    """Reads, before and after a window, the processes' CPU time and the bench database's counters."""

    def __init__(self, settings: Settings, processes: dict[str, int]):
        self.settings = settings
        self.sample = _sampler(processes)
        self.own = cpu.sampler(processes)
        self.idle: dict[str, float] = {}

    async def measure_idle(self, seconds: float = 3.0) -> None:
        """What each process uses with no orders in flight (once the seeding is done), taken off the window's
        figures."""
        await self.drained(timeout=60)
        before = self.sample()
        await asyncio.sleep(seconds)
        self.idle = cpu.idle_cores(before, self.sample(), seconds)

    @property
    def services_idle(self) -> float:
        return sum(cores for name, cores in self.idle.items() if name not in INFRA)

    async def drained(self, interval: float = 1.0, timeout: float = 120) -> None:
        """Until the services are idle again (cpu.back_to_idle): what the last orders set off downstream
        (notifications, the read model) is done, and counted in the window."""
        levels: list[float] = []

        async def idle():
            before = self.own()
            await asyncio.sleep(interval)
            levels.append(cpu.busy_cores(before, self.own(), interval))
            return cpu.back_to_idle(levels, self.services_idle if self.idle else None)
        with suppress(TimeoutError):  # still busy: measured as it is (other work of these processes counted too)
            await eventually(idle, timeout=timeout, interval=0, what="the processes to be idle")

    async def read(self) -> tuple[dict[str, float | None], dict[str, float], float, dict[int, Statement]]:
        return (self.sample(), await _database_counters(self.settings), time.monotonic(),
                await _statements(self.settings))

    async def measured(self, saturated: Result, steady: Result, before, after) -> Measured:
        orders = saturated.orders
        return Measured(saturated, steady,
                        cpu.per_order(before[0], after[0], orders, idle=self.idle, seconds=after[2] - before[2]),
                        per_order_counts(before[1], after[1], orders), self.services_idle,
                        costliest_statements(before[3], after[3], orders))


def per_order_counts(before: dict[str, float], after: dict[str, float], orders: int) -> dict[str, float]:
    return {name: (after.get(name, 0) - count) / orders for name, count in before.items() if orders > 0}


async def _statements(settings: Settings) -> dict[int, Statement]:
    """The bench database's statements so far (pg_stat_statements), by query id; none where the extension is not
    loaded (`shared_preload_libraries`, set by deploy/postgres.sh)."""
    conn = await asyncpg.connect(settings.admin_dsn())
    try:
        await conn.execute("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
        rows = await conn.fetch(
            """SELECT queryid, calls, total_exec_time, shared_blks_hit + shared_blks_read AS blocks, query
               FROM pg_stat_statements WHERE dbid = (SELECT oid FROM pg_database WHERE datname = current_database())
                 AND queryid IS NOT NULL""")
        return {r["queryid"]: Statement(r["calls"], r["total_exec_time"], r["blocks"], r["query"]) for r in rows}
    except asyncpg.PostgresError:
        return {}
    finally:
        await conn.close()


def costliest_statements(before: dict[int, Statement], after: dict[int, Statement], orders: int,
                         top: int = 8) -> list[Statement]:
    """The statements that took the most time between two readings, per order."""
    if orders <= 0:
        return []
    window = []
    for query_id, now in after.items():
        was = before.get(query_id, Statement(0, 0, 0, ""))
        window.append(Statement((now.calls - was.calls) / orders, (now.milliseconds - was.milliseconds) / orders,
                                (now.blocks - was.blocks) / orders, " ".join(now.query.split())))
    return sorted(window, key=lambda s: s.milliseconds, reverse=True)[:top]


async def _database_counters(settings: Settings) -> dict[str, float]:
    """Transactions committed in the bench's database, and rows inserted, updated or deleted per schema
    (Postgres's statistics: flushed by each backend within a second or so, so a window is a little blurred)."""
    conn = await asyncpg.connect(settings.admin_dsn())
    try:
        counters = {"commits": await conn.fetchval(
            "SELECT xact_commit FROM pg_stat_database WHERE datname = current_database()")}
        for row in await conn.fetch("SELECT schemaname, sum(n_tup_ins + n_tup_upd + n_tup_del) AS rows "
                                    "FROM pg_stat_user_tables GROUP BY schemaname ORDER BY schemaname"):
            counters[f"rows {row['schemaname']}"] = row["rows"]
        return counters
    finally:
        await conn.close()


class Watcher:
    """Sees the final message of each flow on a topic and notes when it arrived."""

    def __init__(self, settings: Settings, topic: str, key_of: Callable[[dict], str | None]):
        self.topic = settings.topic(topic)
        self.key_of = key_of
        self.arrived: dict[str, float] = {}
        self._consumer = AIOKafkaConsumer(**settings.kafka_login().aiokafka(), enable_auto_commit=False)

    async def __aenter__(self):
        await self._consumer.start()
        self._consumer.assign([TopicPartition(self.topic, p) for p in range(PARTITIONS)])
        await self._consumer.seek_to_end()
        self._task = asyncio.create_task(self._collect())
        return self

    async def __aexit__(self, *exc):
        self._task.cancel()
        await asyncio.gather(self._task, return_exceptions=True)
        await self._consumer.stop()

    async def _collect(self):
        while True:
            for records in (await self._consumer.getmany(timeout_ms=50, max_records=2000)).values():
                now = time.monotonic()
                for record in records:
                    key = self.key_of(json.loads(record.value))
                    if key is not None:
                        self.arrived.setdefault(key, now)


async def run_phase(sender: Client, watcher: Watcher, topic: str, orders: list[PlaceOrder],
                    key_of_order: Callable[[PlaceOrder, str], str], rate: float | None,
                    still_running: Callable[[], None] = lambda: None) -> Result:
    """Send the orders (at `rate`, or as fast as the producer takes them) and wait for each flow's last message;
    `still_running` raises if what is measured has stopped, so that a dead worker fails the phase at once instead
    of after the wait's five minutes."""
    sent: dict[str, float] = {}
    chunk = 200 if rate is None else max(1, int(rate / 50))
    started = time.monotonic()
    for i in range(0, len(orders), chunk):
        part = orders[i:i + chunk]
        envelopes = [wrap(o, source="bench/channel", correlation_id=o.channel_order_id) for o in part]
        deliveries = [await sender.producer.send(sender.settings.topic(topic), e.model_dump_json().encode(),
                                                 o.key().encode()) for o, e in zip(part, envelopes, strict=True)]
        await asyncio.gather(*deliveries)
        now = time.monotonic()
        for order, envelope in zip(part, envelopes, strict=True):
            sent[key_of_order(order, str(envelope.id))] = now
        if rate:
            ahead = (i + len(part)) / rate - (now - started)
            if ahead > 0:
                await asyncio.sleep(ahead)

    def all_arrived() -> bool:
        still_running()
        return all(k in watcher.arrived for k in sent)

    await eventually(all_arrived, timeout=300, interval=0.05, what=f"{len(sent)} flows to finish")
    finished = max(watcher.arrived[k] for k in sent)
    return Result(len(sent), finished - started, [(watcher.arrived[k] - t) * 1000 for k, t in sent.items()])


async def bench_oms(settings: Settings, count: int, rate: float | None, processes: dict[str, int]) -> Measured:
    network = load.Network(load.run_tag())
    async with client(settings, "bench/seed") as seeder:
        await load.seed(seeder, network)
    await _wait_for_stock(settings, len(network.receipts()), network.tag)
    stream = list(load.orders(network, count * 2, failures=False))

    def confirmed(envelope: dict) -> str | None:
        return envelope["subject"] if envelope.get("type") == OrderConfirmed.message_type else None

    def order_key(order: PlaceOrder, _: str) -> str:
        return str(order_id_for(order.channel, order.channel_order_id))

    meter = Meter(settings, processes)
    async with client(settings, "bench/channel") as sender, Watcher(settings, ORDER_EVENTS, confirmed) as watcher:
        await meter.measure_idle()
        before = await meter.read()
        saturated = await run_phase(sender, watcher, PlaceOrder.topic, stream[:count], order_key, None)
        await meter.drained()
        after = await meter.read()
        steady = await run_phase(sender, watcher, PlaceOrder.topic, stream[count:], order_key,
                                 rate or saturated.throughput / 2)
        await meter.drained()  # what the last orders set off downstream is not left to slow the baseline down
    return await meter.measured(saturated, steady, before, after)


# The baseline's saturation phase takes this many times the OMS's orders: at its rate, the OMS's count is over in
# about 1.5 s, so that filling and draining its hops, and its consumers' first fetches, would weigh in its
# throughput (3,000 orders alone, four runs: 1,867-2,263 orders/s; 15,000, three runs: 2,389-2,475).
BASELINE_SATURATION_FACTOR = 5


async def bench_baseline(settings: Settings, count: int, rate: float) -> Measured:
    prefix = f"{settings.topic_prefix}{load.run_tag().lower()}."
    names = [f"bench.hop{h}.v1" for h in range(1, baseline.HOPS + 2)] + [baseline.EVENTS_TOPIC]
    await ensure_topics(settings, prefix, names=names)
    await baseline.prepare(settings.admin_dsn())
    env = dict(os.environ, OMS_PG_DATABASE=settings.pg_database)
    workers = [subprocess.Popen([sys.executable, "-m", "ops.baseline", prefix, *map(str, hops)], cwd=ROOT, env=env)
               for hops in baseline.PROCESS_HOPS.values()]
    saturating = count * BASELINE_SATURATION_FACTOR
    stream = list(load.orders(load.Network(load.run_tag()), saturating + count, failures=False))
    try:
        last_hop = f"bench.hop{baseline.HOPS + 1}.v1"
        async with client(settings.model_copy(update={"topic_prefix": prefix}), "bench/channel") as sender, \
                Watcher(settings.model_copy(update={"topic_prefix": prefix}), last_hop,
                        lambda envelope: envelope["id"]) as watcher:
            meter = Meter(settings, {name: w.pid for name, w in zip(baseline.PROCESS_HOPS, workers, strict=True)})
            await meter.measure_idle()
            before = await meter.read()
            saturated = await run_phase(sender, watcher, "bench.hop1.v1", stream[:saturating], lambda _, i: i, None,
                                        lambda: _workers_running(workers))
            await meter.drained()
            after = await meter.read()
            steady = await run_phase(sender, watcher, "bench.hop1.v1", stream[saturating:], lambda _, i: i, rate,
                                     lambda: _workers_running(workers))
        return await meter.measured(saturated, steady, before, after)
    finally:
        for worker in workers:
            worker.terminate()
        for worker in workers:
            worker.wait(timeout=10)
        await delete_topics(settings, prefix, names=names)


def _workers_running(workers: list[subprocess.Popen]) -> None:
    if stopped := [w for w in workers if w.poll() is not None]:
        raise RuntimeError("the baseline stopped: " + ", ".join(
            f"hops {' '.join(map(str, w.args[4:]))} exited with {w.returncode}" for w in stopped))


async def _wait_for_stock(settings: Settings, receipts: int, tag: str) -> None:
    conn = await asyncpg.connect(settings.admin_dsn())
    try:
        async def booked():
            return await conn.fetchval("SELECT count(*) FROM inventory.receipts WHERE receipt_id LIKE $1",
                                       f"{tag}:%") >= receipts
        await eventually(booked, timeout=120, what="the bench stock to be booked")
    finally:
        await conn.close()


def report(oms: Measured, bare: Measured | None) -> str:
    rows = [("OMS (six services)", oms), *([("bare pipeline baseline", bare)] if bare else [])]
    lines = [
        f"machine: {os.cpu_count()} cores, {platform.processor() or platform.machine()}, "
        f"Python {platform.python_version()}, {_cpu_model()}",
        f"{'':24} {'orders':>7} {'orders/s':>9} {'steady at':>10} {'p50 ms':>8} {'p95 ms':>8} {'p99 ms':>8}",
    ]
    for name, measured in rows:
        saturated, steady = measured.saturated, measured.steady
        lines.append(f"{name:24} {saturated.orders:>7} {saturated.throughput:>9.0f} {steady.throughput:>8.0f}/s "
                     f"{steady.percentile(50):>8.0f} {steady.percentile(95):>8.0f} {steady.percentile(99):>8.0f}")
    if bare:
        lines.append(f"OMS / baseline: throughput {oms.saturated.throughput / bare.saturated.throughput:.2f}, "
                     f"p99 latency {oms.steady.percentile(99) / bare.steady.percentile(99):.2f}x")
    lines.append("")
    lines.append("CPU over the saturation phase until the processes were idle again, less what each used idle "
                 "(" + ", ".join(f"{name} {m.idle_cores:.2f} cores" for name, m in rows) + "), per order:")
    lines.append(cpu.table({name: measured.cpu for name, measured in rows}, shared=frozenset(INFRA)))
    for name, measured in rows:
        lines.append(f"Postgres per order, {name}: " + ", ".join(
            f"{counter} {value:.1f}" for counter, value in measured.database.items() if value >= 0.05))
    if oms.statements:
        lines.append("The OMS's costliest statements (pg_stat_statements), per order: calls, ms (lock waits "
                     "included), buffers")
        lines += [f"{s.calls:6.2f} {s.milliseconds:6.3f} {s.blocks:7.1f}  {s.query[:100]}" for s in oms.statements]
    return "\n".join(lines)


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as info:
            return next(line.split(":", 1)[1].strip() for line in info if line.startswith("model name"))
    except (OSError, StopIteration):
        return "unknown CPU"


async def bench(settings: Settings, count: int, rate: float | None, processes: dict[str, int], *,
                with_baseline: bool = True, runs: int = 1) -> str:
    """`processes`: the OMS's, by label (capture, capture-2, ...), whose CPU is measured. With several `runs`, each
    run's report, then their spread and the targets judged on the medians."""
    measured: list[tuple[Measured, Measured | None]] = []
    for _ in range(runs):
        oms = await bench_oms(settings, count, rate, processes)
        bare = await bench_baseline(settings, count, rate or oms.saturated.throughput / 2) if with_baseline else None
        measured.append((oms, bare))
    if runs == 1:
        return report(*measured[0])
    return "\n\n".join([*(f"run {number} of {runs}\n{report(oms, bare)}"
                           for number, (oms, bare) in enumerate(measured, 1)), spread(measured)])


# Issue 12's targets (the p50 at 50 orders/s is `oms latency`'s).
TARGET_THROUGHPUT = 1000.0  # orders/s saturated
TARGET_RATIO = 0.7  # OMS / bare baseline throughput
TARGET_P99_MS, TARGET_P99_RATE = 500.0, 500.0  # p99 at that steady rate


def figure(values: list[float], digits: int = 0) -> str:
    """A figure over several runs: its median (lowest–highest)."""
    return f"{statistics.median(values):.{digits}f} ({min(values):.{digits}f}–{max(values):.{digits}f})"


def spread(measured: list[tuple[Measured, Measured | None]]) -> str:
    """Median (lowest–highest) of each figure over the runs, and the targets judged on the medians."""
    def judged(met: bool) -> str:
        return "met" if met else "not met"

    oms = [o for o, _ in measured]
    throughput = [o.saturated.throughput for o in oms]
    steady_rate = statistics.median(o.steady.throughput for o in oms)
    p99 = [o.steady.percentile(99) for o in oms]
    lines = [f"over {len(measured)} runs, median (lowest–highest):",
             f"OMS: {figure(throughput)} orders/s saturated; steady at {figure([o.steady.throughput for o in oms])}/s "
             f"p50 {figure([o.steady.percentile(50) for o in oms])} ms, p99 {figure(p99)} ms; service CPU "
             f"{figure([o.cpu.total_without(INFRA) for o in oms], 2)} ms per order",
             "targets, on the medians:",
             f"  >= {TARGET_THROUGHPUT:,.0f} orders/s saturated: {statistics.median(throughput):.0f}, "
             + judged(statistics.median(throughput) >= TARGET_THROUGHPUT)]
    if all(bare for _, bare in measured):
        ratios = [o.saturated.throughput / bare.saturated.throughput for o, bare in measured]
        lines.insert(2, f"bare baseline: {figure([bare.saturated.throughput for _, bare in measured])} orders/s "
                        f"saturated; OMS / baseline {figure(ratios, 2)}")
        lines.append(f"  OMS / baseline >= {TARGET_RATIO}: {statistics.median(ratios):.2f}, "
                     + judged(statistics.median(ratios) >= TARGET_RATIO))
    if steady_rate >= TARGET_P99_RATE * 0.95:
        lines.append(f"  p99 <= {TARGET_P99_MS:.0f} ms at {TARGET_P99_RATE:.0f} orders/s: "
                     f"{statistics.median(p99):.0f} ms, " + judged(statistics.median(p99) <= TARGET_P99_MS))
    else:
        lines.append(f"  p99 <= {TARGET_P99_MS:.0f} ms at {TARGET_P99_RATE:.0f} orders/s: not judged, steady at "
                     f"{steady_rate:.0f}/s (`--rate {TARGET_P99_RATE:.0f}` holds that rate, if the OMS can)")
    return "\n".join(lines)


def running_services(run_dir: Path) -> dict[str, int]:
    """The services `oms up` runs (any extra instances too), by label, from their pid files."""
    labels = {path.stem for path in run_dir.glob("*.pid")}
    procs = [ServiceProcess(name, run_dir, int(instance or 1))
             for name, _, instance in (label.partition("-") for label in labels) if name in SERVICES]
    return {proc.label: pid for proc in procs if (pid := proc.pid()) is not None}


@asynccontextmanager
async def private_oms(base: Settings, instances: int = 1) -> AsyncIterator[tuple[Settings, dict[str, int]]]:
    """The six services of this checkout (`instances` of each) on a database and topic prefix of their own, as
    the tests' stack runs them, with a mail sink of their own as `oms up` has; everything removed afterwards."""
    suffix = uuid.uuid4().hex[:6]
    settings = base.model_copy(update={"pg_database": f"{base.pg_database}_bench_{suffix}",
                                       "topic_prefix": f"{base.topic_prefix}bench{suffix}."})
    with tempfile.TemporaryDirectory(prefix="oms-bench-") as run_dir:
        sink = MailSinkProcess(Path(run_dir), Path(run_dir) / "mail", free_port())
        env = dict(os.environ, OMS_PG_DATABASE=settings.pg_database, OMS_TOPIC_PREFIX=settings.topic_prefix,
                   OMS_SMTP_PORT=str(sink.port))
        procs = [ServiceProcess(name, Path(run_dir), instance, http_port=free_port())
                 for name in SERVICES for instance in range(1, instances + 1)]
        try:
            await prepare(settings)
            sink.start()
            for proc in procs:
                proc.start(env)
            await eventually(lambda: all(health.readiness(proc.url())[0] for proc in procs), timeout=120,
                             what="the bench's services to be ready")
            yield settings, {proc.label: proc.pid() for proc in procs}
        finally:
            for proc in procs:
                proc.stop()
            sink.stop()
            await discard_topics(settings)
            conn = await asyncpg.connect(settings.admin_dsn("postgres"))
            try:
                await conn.execute(f'DROP DATABASE IF EXISTS "{settings.pg_database}" WITH (FORCE)')
            finally:
                await conn.close()


async def bench_private(base: Settings, count: int, rate: float | None, instances: int, *,
                        with_baseline: bool = True, runs: int = 1) -> str:
    # Stopped (SIGTERM), it still stops its services and removes its database and topics.
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, asyncio.current_task().cancel)
    async with private_oms(base, instances) as (settings, processes):
        return await bench(settings, count, rate, processes, with_baseline=with_baseline, runs=runs)


INFRA = ("Kafka", "Postgres")


def _sampler(processes: dict[str, int]) -> cpu.Sample:
    """The processes, and the broker's and the database's process trees (their pid files in the state dir)."""
    return cpu.sampler(processes, {name: pid for name, pid in zip(INFRA, _infra_pids(), strict=True)
                                   if pid is not None})


def _infra_pids() -> tuple[int | None, int | None]:
    def first_line(path: Path) -> int | None:
        try:
            return int(path.read_text().split()[0])
        except (OSError, ValueError, IndexError):
            return None
    return first_line(state_dir() / "kafka" / "kafka.pid"), first_line(state_dir() / "postgres" / "data" /
                                                                        "postmaster.pid")
