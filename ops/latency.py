"""`oms latency`: where an order's time goes at a fixed rate, hop by hop.

On an OMS of its own (as `oms bench --private`), orders are published at a steady rate; then the latency of each
(PlaceOrder published → OrderConfirmed seen), the CPU every process used per order over the run (from /proc, idle
use included: at a fixed rate it is part of the cost), Postgres commits per order, and for each hop of the
confirm path two delays, read from the topics afterwards:

- **to the consumer**: from a message's publication (its Kafka timestamp, set by the relay's producer) until the
  consumer staged the message it caused (the effect's envelope time): Kafka's transit, waiting for the
  consumer's previous batch, and the handler;
- **relay**: from a message's staging until its publication: the rest of its transaction, the commit, and the
  relay's claim.

The p50s of the hops add up to about the p50 end to end, so a change shows which step it moved. `oms bench`
measures throughput with full batches; this shows what a rate below saturation costs, with small ones.

Each run first sends a few seconds' worth of orders at the same rate to warm up (`warmup`), and measures only
what follows: a fresh OMS's first orders wait for connections, prepared statements and a broker that has not
yet compiled the paths it takes; their p50 is printed beside the run's, not mixed into it.
"""

import asyncio
import json
import signal
import statistics
import time
from collections import defaultdict
from collections.abc import Iterable
from contextlib import suppress
from dataclasses import dataclass
from datetime import datetime

import asyncpg
from aiokafka import AIOKafkaConsumer, TopicPartition

from services.capture.validation import order_id_for
from shared.contracts.orders import OrderConfirmed, PlaceOrder
from shared.contracts.topics import ORDER_EVENTS
from shared.settings import Settings

from . import cpu, load
from .bench import Watcher, _sampler, _wait_for_stock, figure, private_oms, run_phase
from .client import client

# The confirm path: each message and the one it causes (on an order's first sourcing inventory asks routing itself
# and routing has inventory pin the order, so StockReserved and OrderRouted are off the path).
CONFIRM_PATH = [("PlaceOrder", "ReserveStock"), ("ReserveStock", "RouteOrder"), ("RouteOrder", "AllocateReservation"),
                ("AllocateReservation", "ReservationAllocated"), ("ReservationAllocated", "RequestFulfillment"),
                ("RequestFulfillment", "FulfillmentOrderCreated"), ("FulfillmentOrderCreated", "OrderConfirmed")]


@dataclass(frozen=True)
class Delays:
    relay: dict[str, list[float]]  # by message type: ms from staged to published
    consumer: dict[tuple[str, str], list[float]]  # by (cause, effect): ms from the cause published to the effect staged


def delays(records: Iterable[tuple[float, dict]], since: float = 0.0) -> Delays:
    """`records`: (Kafka timestamp in seconds, envelope) of every message on the topics; a message published to
    several topics (a party's copy) counts once, at its first publication, and only if that was at `since` or
    later (the warm-up's messages, all published before the measured orders, are left out)."""
    first: dict[str, tuple[float, dict]] = {}
    for published, envelope in sorted(records, key=lambda r: r[0]):
        first.setdefault(envelope["id"], (published, envelope))
    first = {id_: record for id_, record in first.items() if record[0] >= since}
    relay: dict[str, list[float]] = defaultdict(list)
    consumer: dict[tuple[str, str], list[float]] = defaultdict(list)
    for published, envelope in first.values():
        staged = datetime.fromisoformat(envelope["time"]).timestamp()
        kind = _name(envelope["type"])
        relay[kind].append((published - staged) * 1000)
        if (cause := first.get(envelope.get("causationid") or "")) is not None:
            consumer[(_name(cause[1]["type"]), kind)].append((staged - cause[0]) * 1000)
    return Delays(dict(relay), dict(consumer))


def _name(message_type: str) -> str:
    """oms.capture.PlaceOrder.v1 → PlaceOrder"""
    parts = message_type.split(".")
    return parts[-2] if len(parts) >= 2 else message_type


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(p / 100 * len(ordered)))]


def hop_table(found: Delays) -> str:
    lines = [f"{'confirm path hop':48} {'to the consumer p50/p90 ms':>28} {'relay p50/p90 ms':>18}"]
    total = 0.0
    for cause, effect in CONFIRM_PATH:
        to_consumer, relay = found.consumer.get((cause, effect), []), found.relay.get(effect, [])
        if not to_consumer or not relay:
            lines.append(f"{cause + ' → ' + effect:48} {'not seen':>28}")
            continue
        total += percentile(to_consumer, 50) + percentile(relay, 50)
        lines.append(f"{cause + ' → ' + effect:48} {_pair(to_consumer):>28} {_pair(relay):>18}")
    lines.append(f"{'sum of the p50s':48} {total:>28.0f}")
    return "\n".join(lines)


def _pair(values: list[float]) -> str:
    return f"{percentile(values, 50):.0f} / {percentile(values, 90):.0f}"


# Issue 12's target at a fixed rate: the p50 end to end at 50 orders/s.
TARGET_P50_MS, TARGET_P50_RATE = 100.0, 50.0
WARMUP_SECONDS = 5.0
SHARED = frozenset(("Kafka", "Postgres"))


@dataclass(frozen=True)
class Run:
    """One run at a fixed rate: end-to-end latencies, CPU per order, commits per order, and the hops' delays."""

    rate: float
    count: int
    p50: float
    p95: float
    p99: float
    commits_per_order: float
    cpu: cpu.CpuPerOrder
    hops: Delays
    warmup: int = 0
    warmup_p50: float | None = None

    def report(self) -> str:
        warmed = (f" (after {self.warmup} to warm up, whose p50 was {self.warmup_p50:.0f} ms)"
                  if self.warmup_p50 is not None else "")
        return "\n".join([
            f"{self.count} orders at {self.rate:g}/s{warmed}: p50 {self.p50:.0f} ms, p95 {self.p95:.0f} ms, "
            f"p99 {self.p99:.0f} ms; Postgres commits per order {self.commits_per_order:.1f}",
            cpu.table({"at this rate, idle use included": self.cpu}, shared=SHARED),
            hop_table(self.hops),
        ])


async def latency(base: Settings, rate: float, count: int, runs: int = 1, warmup: int | None = None) -> str:
    """Each run on a fresh OMS of its own; with several, their spread and the p50 target judged on the median.
    `warmup`: orders sent first and not measured (default: WARMUP_SECONDS' worth at `rate`)."""
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, asyncio.current_task().cancel)
    warmup = round(rate * WARMUP_SECONDS) if warmup is None else warmup
    measured = [await measure(base, rate, count, warmup) for _ in range(runs)]
    if runs == 1:
        return measured[0].report()
    return "\n\n".join([*(f"run {number} of {runs}\n{run.report()}" for number, run in enumerate(measured, 1)),
                        spread(measured)])


def spread(runs: list[Run]) -> str:
    p50 = statistics.median(run.p50 for run in runs)
    rate = runs[0].rate
    if rate == TARGET_P50_RATE:
        verdict = f"{p50:.0f} ms, " + ("met" if p50 <= TARGET_P50_MS else "not met")
    else:
        verdict = f"not judged at {rate:g}/s (the default rate, {TARGET_P50_RATE:g}/s, is the target's)"
    return "\n".join([
        f"over {len(runs)} runs at {rate:g}/s, median (lowest–highest):",
        f"p50 {figure([r.p50 for r in runs])} ms, p99 {figure([r.p99 for r in runs])} ms; service CPU "
        f"{figure([r.cpu.total_without(SHARED) for r in runs], 2)} ms per order, Postgres "
        f"{figure([r.cpu.ms.get('Postgres') or 0.0 for r in runs], 2)}, Kafka "
        f"{figure([r.cpu.ms.get('Kafka') or 0.0 for r in runs], 2)}; commits per order "
        f"{figure([r.commits_per_order for r in runs], 1)}",
        "target, on the median:",
        f"  p50 <= {TARGET_P50_MS:.0f} ms at {TARGET_P50_RATE:g} orders/s: {verdict}",
    ])


async def measure(base: Settings, rate: float, count: int, warmup: int = 0) -> Run:
    async with private_oms(base) as (settings, processes):
        network = load.Network(load.run_tag())
        async with client(settings, "latency/seed") as seeder:
            await load.seed(seeder, network)
        await _wait_for_stock(settings, len(network.receipts()), network.tag)
        orders = list(load.orders(network, warmup + count, failures=False))
        sample = _sampler(processes)
        admin = await asyncpg.connect(settings.admin_dsn("postgres"))
        try:
            async with client(settings, "latency/channel") as sender, \
                    Watcher(settings, ORDER_EVENTS, _confirmed) as watcher:
                warmed = await run_phase(sender, watcher, PlaceOrder.topic, orders[:warmup], _order_key, rate) \
                    if warmup else None
                started, commits_before, cpu_before = time.time(), await _commits(admin, settings), sample()
                result = await run_phase(sender, watcher, PlaceOrder.topic, orders[warmup:], _order_key, rate)
                commits_after, cpu_after = await _commits(admin, settings), sample()
        finally:
            await admin.close()
        found = delays(await _published(settings), since=started)
    return Run(rate, count, result.percentile(50), result.percentile(95), result.percentile(99),
               (commits_after - commits_before) / count, cpu.per_order(cpu_before, cpu_after, count), found,
               warmup, warmed.percentile(50) if warmed else None)


def _order_key(order: PlaceOrder, _: str) -> str:
    return str(order_id_for(order.channel, order.channel_order_id))


def _confirmed(envelope: dict) -> str | None:
    return envelope["subject"] if envelope.get("type") == OrderConfirmed.message_type else None


async def _commits(admin: asyncpg.Connection, settings: Settings) -> int:
    return await admin.fetchval("SELECT xact_commit FROM pg_stat_database WHERE datname = $1", settings.pg_database)


async def _published(settings: Settings) -> list[tuple[float, dict]]:
    """Every message on the OMS's topics, from their start, until nothing more comes for two seconds."""
    consumer = AIOKafkaConsumer(**settings.kafka_login().aiokafka(), enable_auto_commit=False)
    await consumer.start()
    try:
        # The topics with their partitions: aiokafka's public topics() gives only the names.
        metadata = await consumer._client.fetch_all_metadata()  # noqa: SLF001
        consumer.assign([TopicPartition(topic, partition) for topic in metadata.topics()
                         if topic.startswith(settings.topic_prefix)
                         for partition in metadata.partitions_for_topic(topic) or ()])
        await consumer.seek_to_beginning()
        found: list[tuple[float, dict]] = []
        while batches := await consumer.getmany(timeout_ms=2000, max_records=10_000):
            for record in (r for records in batches.values() for r in records):
                with suppress(ValueError, TypeError):  # bytes that are not JSON: not ours to time
                    envelope = json.loads(record.value)
                    if isinstance(envelope, dict) and {"id", "time", "type"} <= envelope.keys():
                        found.append((record.timestamp / 1000, envelope))
        return found
    finally:
        await consumer.stop()
