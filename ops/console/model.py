"""The console's arithmetic, pure: lag from offsets, rates from end-offset deltas, each consumer instance's
partitions and their lag, the alert conditions of deploy/prometheus/alerts.yml evaluated over the console's own
samples, the order stuck orders are shown in, and the sparklines. Nothing here does I/O."""

import bisect
import json
import re
from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta

HOUR = 3600.0
TRACE_ID = re.compile(r"[0-9a-f]{32}")

# The thresholds of deploy/prometheus/alerts.yml (OmsSagasPastDeadline, OmsOutboxStale, OmsConsumerLagGrowing,
# OmsDeadLetters, OmsServiceNotReady): the console fires the same conditions from what it samples itself.
LAG_GROWING_FOR = 300.0
DEAD_LETTER_WINDOW = 300.0
SAGA_PAST_DEADLINE_BY = 60.0
OUTBOX_TOO_OLD = 30.0
NOT_READY_FOR = 60.0


def lag(committed: Mapping[int, int | None], ends: Mapping[int, int]) -> dict[int, int]:
    """Per partition: records written but not yet committed by the group. A partition the group never committed
    on lags by everything in it (the group starts from the earliest record); a commit past the end seen (the
    end was read a moment earlier) is no lag, never a negative one."""
    return {partition: max(0, end - (committed.get(partition) or 0)) for partition, end in ends.items()}


def rate(earlier: Mapping[str, int], later: Mapping[str, int], seconds: float) -> dict[str, float]:
    """Messages per second per key from two readings of running totals (end offsets summed over partitions). A
    key missing from the earlier reading, or a total that went down (topic recreated), has no rate yet."""
    if seconds <= 0:
        return {}
    return {key: (total - earlier[key]) / seconds for key, total in later.items()
            if key in earlier and total >= earlier[key]}


@dataclass(frozen=True)
class Member:
    """One consumer in a group: a service instance's (its number, from the static membership id) or another's."""
    instance: str
    client_id: str
    host: str
    partitions: tuple[tuple[str, int], ...]  # (topic without the prefix, partition) it is assigned


@dataclass(frozen=True)
class GroupState:
    group: str
    service: str | None
    state: str  # Kafka's: Stable, PreparingRebalance, CompletingRebalance, Empty, Dead
    members: tuple[Member, ...]


@dataclass(frozen=True)
class InstanceRow:
    """What one instance of a service consumes in one of its groups; `instance` None: nobody does (the group
    has no member, its partitions wait)."""
    service: str
    instance: str | None
    host: str
    client_id: str
    group: str
    state: str
    partitions: tuple[tuple[str, tuple[tuple[int, int], ...]], ...]  # per topic: (partition, lag)
    lag: int


def instances(groups: Iterable[GroupState], lags: Iterable) -> list[InstanceRow]:
    """Per service instance and group: the partitions it owns with their lag (`lags`: rows with group, topic,
    partition and lag); a group without members is one row owning nothing, lagging by all its partitions'."""
    lags = list(lags)
    lag_of = {(row.group, row.topic, row.partition): row.lag for row in lags}
    rows = []
    for group in groups:
        service = group.service or "-"
        if not group.members:
            waiting = sum(row.lag for row in lags if row.group == group.group)
            rows.append(InstanceRow(service, None, "", "", group.group, group.state, (), waiting))
        for member in group.members:
            by_topic: dict[str, list[tuple[int, int]]] = {}
            for topic, partition in member.partitions:
                by_topic.setdefault(topic, []).append((partition, lag_of.get((group.group, topic, partition), 0)))
            owned = tuple((topic, tuple(parts)) for topic, parts in sorted(by_topic.items()))
            rows.append(InstanceRow(service, member.instance, member.host, member.client_id, group.group,
                                    group.state, owned, sum(lag for _, parts in owned for _, lag in parts)))
    return sorted(rows, key=lambda r: (r.service, r.instance is None, _numeric_first(r.instance), r.group))


def _numeric_first(instance: str | None) -> tuple:
    return (0, int(instance), "") if instance and instance.isdigit() else (1, 0, instance or "")


@dataclass
class Series:
    """One number sampled over the last hour."""

    points: deque = field(default_factory=lambda: deque())

    def add(self, at: float, value: float) -> None:
        self.points.append((at, value))
        while self.points and self.points[0][0] < at - HOUR:
            self.points.popleft()

    def latest(self) -> float | None:
        return self.points[-1][1] if self.points else None

    def value_at_or_before(self, at: float) -> float | None:
        found = None
        for when, value in self.points:
            if when > at:
                break
            found = value
        return found

    def span(self) -> float:
        return self.points[-1][0] - self.points[0][0] if len(self.points) > 1 else 0.0


def sparkline(values: Iterable[float], width: int = 120, height: int = 24) -> str:
    """An inline SVG polyline of the values, scaled to the box (a flat line for a constant series). Only numbers
    go into it, so it needs no escaping."""
    values = [float(v) for v in values]
    if len(values) < 2:
        return f'<svg class="spark" width="{width}" height="{height}" aria-hidden="true"></svg>'
    low, high = min(values), max(values)
    spread = (high - low) or 1.0
    step = width / (len(values) - 1)
    points = " ".join(f"{i * step:.1f},{height - 1 - (v - low) / spread * (height - 2):.1f}"
                      for i, v in enumerate(values))
    return (f'<svg class="spark" width="{width}" height="{height}" viewBox="0 0 {width} {height}" aria-hidden="true">'
            f'<polyline fill="none" stroke="currentColor" stroke-width="1.5" points="{points}"/></svg>')


@dataclass(frozen=True)
class Alert:
    name: str
    severity: str
    subject: str
    summary: str
    state: str  # pending (the condition holds, not yet for long enough) or firing


def lag_growing(subject: str, series: Series, now: float, for_seconds: float = LAG_GROWING_FOR) -> Alert | None:
    """OmsConsumerLagGrowing: records waiting, and more of them than five minutes before (`delta(...[5m]) > 0`),
    pending while that holds, firing once it has held at every sample for `for_seconds`."""
    points = list(series.points)
    times = [at for at, _ in points]

    def growing(index: int) -> bool:
        at, value = points[index]
        earlier = max(0, bisect.bisect_right(times, at - LAG_GROWING_FOR) - 1)
        return value > 0 and value > points[earlier][1]

    if not points or not growing(len(points) - 1):
        return None
    window = range(bisect.bisect_left(times, now - for_seconds), len(points))
    held = series.span() >= for_seconds and all(growing(i) for i in window)
    return Alert("OmsConsumerLagGrowing", "warning", subject,
                 f"{subject} falls behind: {points[-1][1]:.0f} records waiting", "firing" if held else "pending")


def dead_letters_recent(failed_at: Iterable[datetime], now: datetime,
                        window: float = DEAD_LETTER_WINDOW) -> Alert | None:
    """OmsDeadLetters: a dead letter in the last five minutes."""
    recent = [at for at in failed_at if at >= now - timedelta(seconds=window)]
    if not recent:
        return None
    return Alert("OmsDeadLetters", "warning", "dead letters",
                 f"{len(recent)} dead letters in the last {window / 60:.0f} minutes", "firing")


def sagas_past_deadline(oldest_past_by: float | None, count: int) -> Alert | None:
    """OmsSagasPastDeadline: a saga a minute past its deadline (the scanner acts within a second)."""
    if oldest_past_by is None or oldest_past_by <= SAGA_PAST_DEADLINE_BY:
        return None
    return Alert("OmsSagasPastDeadline", "critical", "capture",
                 f"{count} sagas past their deadline, the oldest by {oldest_past_by:.0f}s", "firing")


def outbox_stale(service: str, oldest_age: float | None) -> Alert | None:
    """OmsOutboxStale: the oldest unpublished outbox row is older than readiness allows."""
    if oldest_age is None or oldest_age <= OUTBOX_TOO_OLD:
        return None
    return Alert("OmsOutboxStale", "critical", service,
                 f"{service}'s oldest unpublished message waits for {oldest_age:.0f}s", "firing")


def not_ready(service: str, ready: bool, problems: list[str]) -> Alert | None:
    """OmsServiceNotReady: not ready, or not answering."""
    if ready:
        return None
    return Alert("OmsServiceNotReady", "critical", service,
                 f"{service} is not ready: {'; '.join(problems) or 'no answer'}", "firing")


# The rules' `for:`: how long a condition must hold before its alert fires (pending until then).
HOLD_FOR = {"OmsSagasPastDeadline": 60.0, "OmsOutboxStale": 60.0, "OmsServiceNotReady": NOT_READY_FOR}


def held(alerts: Iterable[Alert], since: dict[tuple[str, str], float], now: float) -> list[Alert]:
    """The alerts whose condition holds now, pending until it has held for its rule's `for:`. `since` remembers
    when each condition started holding; a condition that stopped holding is forgotten (it starts afresh)."""
    current = {(alert.name, alert.subject): alert for alert in alerts}
    for key in set(since) - set(current):
        del since[key]
    found = []
    for key, alert in current.items():
        started = since.setdefault(key, now)
        waiting = alert.state == "firing" and now - started < HOLD_FOR.get(alert.name, 0.0)
        found.append(replace(alert, state="pending") if waiting else alert)
    return sorted(found, key=lambda a: (a.state != "firing", a.severity != "critical", a.name, a.subject))


@dataclass(frozen=True)
class StuckOrder:
    order_id: str
    channel: str
    channel_order_id: str
    step: str
    age: float  # seconds since the order was placed
    in_step: float  # seconds since the saga last moved
    past_deadline_by: float | None  # seconds; None when the step has no deadline or it is still ahead


def stuck_first(orders: Iterable[StuckOrder], older_than: float) -> list[StuckOrder]:
    """Past their deadline first (furthest past first), then those older than the threshold (oldest first),
    then the rest (oldest first)."""
    def rank(order: StuckOrder) -> tuple:
        if order.past_deadline_by is not None and order.past_deadline_by > 0:
            return (0, -order.past_deadline_by)
        return (1, -order.age) if order.age > older_than else (2, -order.age)

    return sorted(orders, key=rank)


def pretty_payload(raw: bytes) -> str:
    """The original bytes as indented JSON when they are JSON, else as text (undecodable bytes replaced). The
    result is untrusted text: the templates escape it."""
    text = raw.decode("utf-8", errors="replace")
    try:
        pretty = json.dumps(json.loads(text), indent=2, ensure_ascii=False)
    except ValueError:
        return text
    # JSON may escape half a surrogate pair ("\udfff"), which no UTF-8 page can hold: shown as it was written
    return pretty.encode("utf-8", errors="backslashreplace").decode("utf-8")


def duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    if seconds < 120:
        return f"{seconds:.0f}s"
    return f"{seconds / 60:.0f}m" if seconds < 7200 else f"{seconds / 3600:.1f}h"


def trace_id(trace_context: Mapping[str, str]) -> str | None:
    """The trace id from a W3C traceparent (version-traceid-spanid-flags): 32 hex digits, else none."""
    parts = trace_context.get("traceparent", "").split("-")
    return parts[1] if len(parts) == 4 and TRACE_ID.fullmatch(parts[1]) else None


def trace_link(template: str | None, trace: str | None) -> str | None:
    """Where the trace backend shows the trace (OMS_CONSOLE_TRACE_URL with `{trace_id}` in it, e.g. Jaeger's
    `http://127.0.0.1:16686/trace/{trace_id}`); none without one or without a trace id."""
    return template.replace("{trace_id}", trace) if template and "{trace_id}" in template and trace else None
