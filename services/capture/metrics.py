"""Capture's own metrics: the saga steps each batch took (and how long the order spent in the state it left),
and how many sagas are past their step deadline."""

import asyncio
from dataclasses import dataclass, field
from functools import partial
from uuid import UUID

from prometheus_client import Counter, Gauge, Histogram

from shared.messaging.monitor import REGISTRY
from shared.messaging.retry import run_forever
from shared.messaging.unit_of_work import Begin, UnitOfWork

from . import store

SAGA_TRANSITIONS = Counter("oms_saga_transitions", "Saga steps taken, by the state left and the state entered",
                           ["from_state", "to_state"], registry=REGISTRY)
SAGA_STEP_DURATION = Histogram("oms_saga_step_duration_seconds", "Time an order spent in a saga state, observed "
                               "when it leaves it", ["state"], registry=REGISTRY,
                               buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600, 14400, 86400))
SAGAS_PAST_DEADLINE = Gauge("oms_sagas_past_deadline", "Sagas whose step deadline has passed and that the deadline "
                            "scanner has not acted on", registry=REGISTRY)
SAGA_OLDEST_PAST_DEADLINE = Gauge("oms_saga_oldest_past_deadline_seconds", "How long the most overdue saga has "
                                  "been past its deadline (0 when none is)", registry=REGISTRY)

SAGA_DEADLINE_FAILURES = Counter("oms_saga_deadline_failures", "Deadlines the scanner could not act on (a defect: "
                                 "the saga is set aside and tried again later; its log says why)", registry=REGISTRY)


@dataclass
class SagaSteps:
    """The states each saga of a batch entered, in order."""

    entered: dict[UUID, list[str]] = field(default_factory=dict)

    def step(self, order_id: UUID, state: str) -> None:
        self.entered.setdefault(order_id, []).append(state)

    def count(self, uow: UnitOfWork, before: dict[UUID, tuple[str, float]]) -> None:
        """`before`: each stored saga's state before the batch and the seconds since it entered it (what
        store.save_sagas returns). The transitions are counted once the transaction commits. A state entered and
        left within the batch was held for no time."""
        transitions = []
        for order_id, states in self.entered.items():
            state, seconds = before.get(order_id, ("new", None))
            for entered in states:
                if entered != state:
                    transitions.append((state, entered, seconds))
                    state, seconds = entered, 0.0
        uow.after_commit.append(partial(count_saga_steps, transitions))
        self.entered = {}


async def watch_deadlines(begin: Begin, interval: float = 5.0) -> None:
    """Background task: the sagas past their deadline, as gauges. The deadline scanner acts on them within a
    second, so a count that stays above 0 means it is not keeping up, or failing."""
    async def measure() -> None:
        while True:
            async with begin() as uow:
                due, oldest = await store.past_deadline(uow.conn)
            SAGAS_PAST_DEADLINE.set(due)
            SAGA_OLDEST_PAST_DEADLINE.set(oldest)
            await asyncio.sleep(interval)

    await run_forever("saga-deadline-metrics", measure)


def count_saga_steps(transitions: list[tuple[str, str, float | None]]) -> None:
    """(state left, state entered, seconds spent in the state left, if known) of each step that changed a
    saga's state."""
    for left, entered, seconds in transitions:
        SAGA_TRANSITIONS.labels(left, entered).inc()
        if seconds is not None:
            SAGA_STEP_DURATION.labels(left).observe(max(seconds, 0.0))
