"""What a service knows about its own health, as Prometheus metrics and as the facts readiness is judged on.

FastStream's Prometheus middleware counts and times every batch a subscriber handles; these add what only the
runtime sees: per-message outcomes, dead letters by reason, inbox duplicates, the outbox, consumer lag, handler
latency per message type, readiness, and what became of orders (counted from the events committed). Labels stay
few: services, topics, partitions, message types, reason codes (capped) — never an order. Capture adds its
saga's (services/capture/metrics.py).
"""

import collections
import re
import time
from collections.abc import Iterable
from dataclasses import dataclass, field

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from shared.contracts import Contract
from shared.contracts.orders import OrderAccepted, OrderCancelled, OrderPickedUp, OrderRejected, OrderShipped

REGISTRY = CollectorRegistry()

MESSAGES_CONSUMED = Counter("oms_messages_consumed", "Records a consumer finished with, by outcome",
                            ["service", "topic", "outcome"], registry=REGISTRY)
DEAD_LETTERS = Counter("oms_dead_letters", "Records dead-lettered, by reason",
                       ["service", "topic", "reason"], registry=REGISTRY)
MESSAGES_PUBLISHED = Counter("oms_messages_published", "Outbox rows published to Kafka",
                             ["service", "topic"], registry=REGISTRY)
PARTY_COPIES_SKIPPED = Counter("oms_party_copies_skipped", "Copies for a party without a topic of its own, not sent",
                               ["service", "topic"], registry=REGISTRY)
OUTBOX_BACKLOG = Gauge("oms_outbox_backlog", "Outbox rows not yet published", ["service"], registry=REGISTRY)
OUTBOX_OLDEST_AGE = Gauge("oms_outbox_oldest_age_seconds", "Age of the oldest unpublished outbox row",
                          ["service"], registry=REGISTRY)
OUTBOX_PARKED = Gauge("oms_outbox_parked", "Messages Kafka refused for good, set aside for ops",
                      ["service"], registry=REGISTRY)
CONSUMER_LAG = Gauge("oms_consumer_lag", "Records between a consumer's position and the partition's end",
                     ["service", "topic", "partition"], registry=REGISTRY)
CONSUMER_FAILING = Gauge("oms_consumer_failing_seconds", "How long a consumer has been retrying one batch",
                         ["service", "topic"], registry=REGISTRY)
HANDLER_DURATION = Histogram("oms_handler_duration_seconds", "Time a handler takes over one call (a run of "
                             "messages of one type in a batch)", ["service", "message_type"], registry=REGISTRY)
READY = Gauge("oms_service_ready", "1 while the service is ready, 0 while not", ["service"], registry=REGISTRY)
CHECK_OK = Gauge("oms_readiness_check_ok", "1 while a readiness check passes: database (Postgres answers), outbox "
                 "(published in time), consumers (Kafka consumers running and progressing)",
                 ["service", "check"], registry=REGISTRY)
ORDERS = Counter("oms_orders", "Orders by outcome (accepted, rejected, cancelled, shipped, picked_up), with the "
                 "reason code of a rejection or cancellation", ["outcome", "reason"], registry=REGISTRY)

MAX_REASON_CODES = 50  # distinct reason labels; channels send some reasons, so the set is capped, the rest OTHER
_REASON_CODE = re.compile(r"[A-Z][A-Z0-9_]{0,47}")
_reasons_seen: set[str] = set()


def count_committed(messages: Iterable[Contract]) -> None:
    """What became of orders, from the events a transaction staged, once it has committed."""
    for message in messages:
        if isinstance(message, OrderAccepted):
            ORDERS.labels("accepted", "").inc()
        elif isinstance(message, OrderRejected):
            ORDERS.labels("rejected", _reason(message.reasons[0].code if message.reasons else "")).inc()
        elif isinstance(message, OrderCancelled):
            ORDERS.labels("cancelled", _reason(message.reason.code)).inc()
        elif isinstance(message, OrderShipped) and message.complete:
            ORDERS.labels("shipped", "").inc()
        elif isinstance(message, OrderPickedUp):
            ORDERS.labels("picked_up", "").inc()


def _reason(code: str) -> str:
    if code in _reasons_seen:
        return code
    if not _REASON_CODE.fullmatch(code) or len(_reasons_seen) >= MAX_REASON_CODES:
        return "OTHER"
    _reasons_seen.add(code)
    return code


@dataclass
class ConsumerMonitor:
    """One consumer's progress: counts outcomes, and remembers since when it has failed to finish a batch."""

    service: str
    topic: str
    last_progress: float = field(default_factory=time.monotonic)
    failing_since: float | None = None
    last_error: str | None = None

    def applied(self, batch: list) -> None:
        """Counted once the batch has committed, so a batch retried after a failure is counted once."""
        for outcome, count in collections.Counter(item.outcome for item in batch).items():
            MESSAGES_CONSUMED.labels(self.service, self.topic, outcome).inc(count)
        reasons = collections.Counter(item.dead_letter[0] for item in batch if item.outcome == "dead_letter")
        for reason, count in reasons.items():
            DEAD_LETTERS.labels(self.service, self.topic, reason).inc(count)
        self.last_progress = time.monotonic()
        self.failing_since = None
        self.last_error = None
        CONSUMER_FAILING.labels(self.service, self.topic).set(0)

    def failing(self, error: BaseException) -> None:
        now = time.monotonic()
        self.failing_since = self.failing_since or now
        self.last_error = repr(error)[:300]
        CONSUMER_FAILING.labels(self.service, self.topic).set(now - self.failing_since)

    def failing_for(self) -> float:
        return time.monotonic() - self.failing_since if self.failing_since is not None else 0.0
