"""What a service knows about its own health, as Prometheus metrics and as the facts readiness is judged on.

FastStream's Prometheus middleware counts and times every batch a subscriber handles; these add what only the
runtime sees: per-message outcomes, dead letters by reason, inbox duplicates, the outbox, consumer lag.
"""

import collections
import time
from dataclasses import dataclass, field

from prometheus_client import CollectorRegistry, Counter, Gauge

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
