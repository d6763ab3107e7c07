"""The metrics count what happened, once: orders by outcome from committed events only (a savepoint rolled
back counts nothing), reason labels capped, saga steps as transitions with the time spent in the state left."""

import uuid

import pytest

from services.capture import metrics as capture_metrics
from shared.contracts.common import ReasonCode
from shared.contracts.orders import OrderCancelled, OrderPickedUp, OrderRejected, OrderShipped
from shared.contracts.topics import ORDER_EVENTS
from shared.messaging import monitor
from shared.messaging.monitor import REGISTRY, count_committed
from shared.messaging.unit_of_work import UnitOfWork


def orders(outcome: str, reason: str = "") -> float:
    return REGISTRY.get_sample_value("oms_orders_total", {"outcome": outcome, "reason": reason}) or 0.0


def cancelled(code: str) -> OrderCancelled:
    return OrderCancelled(order_id=uuid.uuid4(), reason=ReasonCode(code=code), stage="routing")


def shipped(complete: bool) -> OrderShipped:
    return OrderShipped(order_id=uuid.uuid4(), fulfillment_order_id=uuid.uuid4(), carrier="DHL",
                        tracking_number="T1", complete=complete)


@pytest.fixture(autouse=True)
def fresh_reasons(monkeypatch):
    monkeypatch.setattr(monitor, "_reasons_seen", set())


def test_outcomes_are_counted_per_order_with_the_reason_and_a_partial_shipment_is_not_shipped():
    before = {key: orders(*key) for key in [("rejected", "TOTALS_MISMATCH"), ("cancelled", "OUT_OF_STOCK"),
                                            ("shipped", ""), ("picked_up", "")]}
    count_committed([
        OrderRejected(channel="web", channel_order_id="W-1", reasons=[ReasonCode(code="TOTALS_MISMATCH"),
                                                                       ReasonCode(code="UNKNOWN_SKU")]),
        cancelled("OUT_OF_STOCK"), shipped(complete=False), shipped(complete=True),
        OrderPickedUp(order_id=uuid.uuid4(), fulfillment_order_id=uuid.uuid4(), store_id="ST-1"),
    ])
    assert {key: orders(*key) - value for key, value in before.items()} == {
        ("rejected", "TOTALS_MISMATCH"): 1, ("cancelled", "OUT_OF_STOCK"): 1, ("shipped", ""): 1,
        ("picked_up", ""): 1}


def test_reason_labels_are_capped_and_only_codes(monkeypatch):
    monkeypatch.setattr(monitor, "MAX_REASON_CODES", 2)
    before = orders("cancelled", "OTHER")
    count_committed([cancelled("FIRST_CODE"), cancelled("SECOND_CODE"), cancelled("THIRD_CODE"),
                     cancelled("not a code"), cancelled("FIRST_CODE")])
    assert orders("cancelled", "OTHER") - before == 2
    assert monitor._reasons_seen == {"FIRST_CODE", "SECOND_CODE"}


class FakeConnection:
    async def execute(self, *args):
        return None


async def test_events_count_once_committed_and_not_when_their_savepoint_rolled_back():
    uow = UnitOfWork(FakeConnection(), "capture", frozenset({ORDER_EVENTS}), settings=None)
    before = orders("cancelled", "NO_ROUTE"), orders("cancelled", "STEP_TIMEOUT")
    uow.emit(cancelled("STEP_TIMEOUT"), correlation_id="c", party="web")
    uow.discard_staged()  # its savepoint rolled back
    uow.emit(cancelled("NO_ROUTE"), correlation_id="c", party="web")
    await uow.flush()
    assert orders("cancelled", "NO_ROUTE") == before[0], "not before the transaction commits"
    uow.committed()
    uow.committed()  # counted once
    assert (orders("cancelled", "NO_ROUTE"), orders("cancelled", "STEP_TIMEOUT")) == (before[0] + 1, before[1])


class FakeUnitOfWork:
    conn = None

    def __init__(self):
        self.after_commit = []


def test_saga_steps_count_each_state_change_with_the_time_spent_in_the_state_left():
    stored, new, unchanged = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    before = {stored: ("reserving", 3.0), unchanged: ("awaiting_shipment", 60.0)}  # as save_sagas returns them
    steps = capture_metrics.SagaSteps()
    for order_id, state in [(stored, "routing"), (new, "reserving"), (stored, "allocating"),
                            (unchanged, "awaiting_shipment")]:
        steps.step(order_id, state)
    uow = FakeUnitOfWork()
    steps.count(uow, before)

    def transitions(left, entered):
        return REGISTRY.get_sample_value("oms_saga_transitions_total", {"from_state": left, "to_state": entered}) or 0

    def durations(state):
        return REGISTRY.get_sample_value("oms_saga_step_duration_seconds_sum", {"state": state}) or 0

    pairs = [("reserving", "routing"), ("routing", "allocating"), ("new", "reserving"),
             ("awaiting_shipment", "awaiting_shipment")]
    counted_before = [transitions(*pair) for pair in pairs], durations("reserving"), durations("new")
    [count] = uow.after_commit
    count()
    assert [transitions(*pair) - was for pair, was in zip(pairs, counted_before[0])] == [1, 1, 1, 0]
    assert durations("reserving") - counted_before[1] == 3.0, "3 s in reserving; none known for a new saga"
    assert durations("new") == counted_before[2]
