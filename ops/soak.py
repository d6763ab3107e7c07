"""`oms soak`: the running OMS at a steady rate for a long while (30 minutes by default, at half of what it takes
at full speed), watched for what a short bench cannot see: memory that creeps up, latency that drifts, storage
that grows per order without bound.

Every `interval` seconds it samples each service's resident memory (/proc/<pid>/status VmRSS) and the latency of
the orders confirmed in that window (PlaceOrder published → OrderConfirmed seen, as `oms bench` measures it;
sampling goes on after the last order is sent until every order is confirmed);
locations ship, payments capture and customers return as in `oms load`, but only for the soak's own orders (they
read from the end of their topics, and its own locations only): a live OMS's history is left alone. After a
warm-up (the first fifth of the run) the verdict: each process's memory at the end within 10 % of where it stood
after warm-up, the p99 of the last third of the run within 1.5 times (plus 50 ms) that of the first third after
warm-up, and every order settled afterwards with the invariant checker's report clean. Storage is given as bytes
per order per schema, with what bounds it.
"""

import asyncio
import signal
import statistics
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from itertools import islice
from pathlib import Path

import asyncpg

from services.capture.validation import order_id_for
from shared.contracts.orders import OrderConfirmed, PlaceOrder
from shared.contracts.topics import FULFILLMENT_WORK, ORDER_EVENTS, party_topic_of
from shared.db.bootstrap import SERVICES
from shared.settings import Settings

from . import invariants, load
from .bench import Watcher, _wait_for_stock, private_oms, running_services
from .client import client
from .simulators import CustomerSimulator, LocationSimulator, PaymentSimulator, joined, positioned
from .waiting import eventually

WARM_UP = 0.2  # of the run's samples
MEMORY_GROWTH_LIMIT = 0.10
LATENCY_DRIFT_FACTOR, LATENCY_DRIFT_SLACK_MS = 1.5, 50.0
DRAIN_SECONDS = 300  # after the last order is sent, how long the soak waits for the last confirmations


@dataclass
class Sample:
    at: float  # seconds into the run
    rss_kib: dict[str, int]
    latencies_ms: list[float]  # of the orders confirmed in the window that ends here


@dataclass
class Verdict:
    problems: list[str] = field(default_factory=list)
    lines: list[str] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return not self.problems


def resident_kib(pid: int) -> int | None:
    try:
        with open(f"/proc/{pid}/status") as status:
            return next(int(line.split()[1]) for line in status if line.startswith("VmRSS:"))
    except (OSError, StopIteration):
        return None


def judge(samples: list[Sample]) -> Verdict:
    """Memory flat after warm-up, latency not drifting (see the module's docstring)."""
    verdict = Verdict()
    settled = samples[max(1, int(len(samples) * WARM_UP)):]
    if len(settled) < 3:
        verdict.problems.append(f"too short to judge: {len(settled)} samples after warm-up (3 needed)")
        return verdict
    for name in sorted(settled[0].rss_kib):
        series = [s.rss_kib[name] for s in settled if name in s.rss_kib]
        if len(series) != len(settled):
            verdict.problems.append(f"{name}: not running for the whole run (restarted or stopped)")
            continue
        start, end = statistics.median(series[:3]), statistics.median(series[-3:])
        growth = end / start - 1
        verdict.lines.append(f"{name:14} RSS {start / 1024:7.1f} → {end / 1024:7.1f} MiB ({growth:+.1%})")
        if growth > MEMORY_GROWTH_LIMIT:
            verdict.problems.append(f"{name}: resident memory grew {growth:.1%} after warm-up "
                                    f"(limit {MEMORY_GROWTH_LIMIT:.0%})")
    third = max(1, len(settled) // 3)
    early = [ms for s in settled[:third] for ms in s.latencies_ms]
    late = [ms for s in settled[-third:] for ms in s.latencies_ms]
    if len(early) < 2 or len(late) < 2:
        verdict.problems.append("no orders confirmed at the start or the end of the run")
        return verdict
    early_p99, late_p99 = _p99(early), _p99(late)
    verdict.lines.append(f"latency p99 {early_p99:.0f} ms after warm-up → {late_p99:.0f} ms at the end "
                         f"(p50 {statistics.median(early):.0f} → {statistics.median(late):.0f} ms)")
    if late_p99 > early_p99 * LATENCY_DRIFT_FACTOR + LATENCY_DRIFT_SLACK_MS:
        verdict.problems.append(f"latency drifted: p99 {early_p99:.0f} → {late_p99:.0f} ms")
    return verdict


def _p99(values: list[float]) -> float:
    return statistics.quantiles(values, n=100, method="inclusive")[98]


async def schema_bytes(settings: Settings) -> dict[str, int]:
    conn = await asyncpg.connect(settings.admin_dsn())
    try:
        rows = await conn.fetch("SELECT schemaname, sum(pg_total_relation_size(relid))::bigint AS bytes "
                                "FROM pg_stat_user_tables WHERE schemaname = ANY($1) GROUP BY 1", list(SERVICES))
        return {r["schemaname"]: r["bytes"] for r in rows}
    finally:
        await conn.close()


def storage_lines(before: dict[str, int], after: dict[str, int], orders: int, settings: Settings) -> list[str]:
    lines = [f"{schema:14} {(after.get(schema, 0) - before.get(schema, 0)) / max(orders, 1) / 1024:6.1f} KiB/order"
             for schema in sorted(after)]
    lines.append(f"bounded by: inbox keys deleted after {settings.inbox_retention_days:g} days (topics keep "
                 f"{settings.topic_retention_days:g}); dead letters and outbox rows leave once handled; an order's "
                 f"records in every schema once it has been closed for {settings.order_retention_days:g} days "
                 f"(OrderPurged), but for inventory's stock ledger, the stock's account, and capture's purged "
                 f"order ids (about 100 bytes an order)")
    return lines


@dataclass
class Soak:
    settings: Settings
    processes: Callable[[], dict[str, int]]  # the services' pids by label, read at every sample
    rate: float
    minutes: float
    interval: float = 30.0
    sent: dict[str, float] = field(default_factory=dict)
    samples: list[Sample] = field(default_factory=list)
    settled: invariants.Report | None = None
    unsettled: int = 0  # of the soak's orders and their exchanges, after the drain

    async def _settle(self, tag: str) -> invariants.Report:
        """The stand-ins go on until every order of the soak (its channel order ids start with the run's tag, the
        exchanges its returns led to included) has settled — handed over or cancelled — with nothing violated, so
        that a soak leaves nothing half done; the checker's last report."""
        conn = await asyncpg.connect(self.settings.admin_dsn())
        try:
            async def settled():
                self.unsettled = await conn.fetchval(
                    """SELECT count(*) FROM capture.order_sagas s JOIN capture.orders o USING (order_id)
                       WHERE o.channel_order_id LIKE $1 AND s.state <> ALL($2)""",
                    f"{tag}-%", list(invariants.SETTLED))
                if self.unsettled:
                    return None
                report = await invariants.check(conn)  # after: its first query is older than its last
                return report if report.ok else None
            try:
                return await eventually(settled, timeout=DRAIN_SECONDS, interval=2, what="the soak's orders to settle")
            except TimeoutError:
                return await invariants.check(conn)
        finally:
            await conn.close()

    async def run(self) -> Verdict:
        network = load.Network(load.run_tag())
        async with client(self.settings, "channel/soak") as channel:
            await load.seed(channel, network)
            await _wait_for_stock(self.settings, len(network.receipts()), network.tag)
            ours = {location.location_id for location in network.locations()}
            simulators = [LocationSimulator(self.settings, channel, group=f"oms.simulator.{network.tag}",
                                            handles=lambda work: work["location_id"] in ours, from_end=True),
                          PaymentSimulator(self.settings, channel, group=f"oms.simulator.payments.{network.tag}",
                                           from_end=True),
                          CustomerSimulator(self.settings, channel, group=f"oms.simulator.customers.{network.tag}",
                                            from_end=True)]
            stand_ins = asyncio.gather(*(simulator.run() for simulator in simulators))
            work = {self.settings.topic(party_topic_of(FULFILLMENT_WORK, location)) for location in ours}
            await eventually(lambda: joined(simulators[0], work) and all(map(joined, simulators[1:])), timeout=60,
                             what="the stand-ins to join, the locations' with this network's work topics")
            for simulator in simulators:
                await positioned(simulator)
            before = await schema_bytes(self.settings)
            count = int(self.rate * self.minutes * 60)
            try:
                async with Watcher(self.settings, ORDER_EVENTS, _confirmed) as watcher:
                    await asyncio.gather(self._publish(channel, load.orders(network, count, failures=False)),
                                         self._sample(watcher, count))
                self.settled = await self._settle(network.tag)
            finally:
                stand_ins.cancel()
                await asyncio.gather(stand_ins, return_exceptions=True)
            after = await schema_bytes(self.settings)
        verdict = judge(self.samples)
        verdict.lines += storage_lines(before, after, len(self.sent), self.settings)
        verdict.lines.append(str(self.settled))
        if self.unsettled or not self.settled.ok:
            verdict.problems.append(f"{self.unsettled} orders not settled {DRAIN_SECONDS} s after the last one was "
                                    f"confirmed, or invariants violated: {self.settled}")
        return verdict

    async def _publish(self, channel, orders: Iterator[PlaceOrder]) -> None:
        started, chunk = time.monotonic(), max(1, int(self.rate / 10))
        while batch := list(islice(orders, chunk)):
            await channel.send_many(batch)
            now = time.monotonic()
            self.sent.update({str(order_id_for(o.channel, o.channel_order_id)): now for o in batch})
            ahead = len(self.sent) / self.rate - (now - started)
            if ahead > 0:
                await asyncio.sleep(ahead)

    async def _sample(self, watcher: Watcher, count: int) -> None:
        started, seen = time.monotonic(), set()
        while True:
            await asyncio.sleep(self.interval)
            window = [(key, at) for key, at in list(watcher.arrived.items()) if key not in seen and key in self.sent]
            seen.update(key for key, _ in window)
            pids = self.processes()
            sample = Sample(time.monotonic() - started,
                            {name: kib for name, pid in pids.items() if (kib := resident_kib(pid)) is not None},
                            [(at - self.sent[key]) * 1000 for key, at in window])
            self.samples.append(sample)
            latencies = sample.latencies_ms
            # The time of day too: a slow window is then found in Postgres's, the broker's and the services' logs.
            print(f"{time.strftime('%H:%M:%S')} {sample.at:6.0f}s  {len(window):6} confirmed  "
                  f"p50 {statistics.median(latencies) if window else 0:5.0f} ms  "
                  f"p99 {_p99(latencies) if len(window) > 1 else max(latencies, default=0):5.0f} ms  "
                  f"RSS MiB {' '.join(f'{n}={k / 1024:.0f}' for n, k in sorted(sample.rss_kib.items()))}",
                  flush=True)
            if len(self.sent) >= count and sample.at >= self.minutes * 60 and (
                    len(seen) >= count or sample.at >= self.minutes * 60 + DRAIN_SECONDS):
                return


def _confirmed(envelope: dict) -> str | None:
    return envelope["subject"] if envelope.get("type") == OrderConfirmed.message_type else None


async def soak(settings: Settings, run_dir: Path, minutes: float, rate: float, interval: float, *,
               private: bool = False) -> int:
    print(f"soak: {minutes:g} minutes at {rate:g} orders/s, a sample every {interval:g} s"
          + (", on an OMS of its own" if private else ""))
    if private:
        # Stopped (SIGTERM), it still stops its services and removes its database and topics.
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, asyncio.current_task().cancel)
        async with private_oms(settings) as (own, processes):
            verdict = await Soak(own, lambda: processes, rate, minutes, interval).run()
    else:
        verdict = await Soak(settings, lambda: running_services(run_dir), rate, minutes, interval).run()
    print("\n".join(verdict.lines))
    print("PASSED" if verdict.passed else "FAILED:\n  " + "\n  ".join(verdict.problems))
    return 0 if verdict.passed else 1
