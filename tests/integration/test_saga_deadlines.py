"""Capture's deadline scanner on its real schema: a saga it cannot act on (a defect) does not hold back the others
due with it; it is set aside for a while and counted. A step's deadline runs from its command's sending, whatever
else the saga hears meanwhile."""

import uuid

import pytest

from shared.contracts.common import Line
from shared.contracts.orders import PlaceOrder
from shared.messaging.unit_of_work import units_of_work

from ops.demo import address
from services.capture import handlers, metrics, store
from services.capture import saga as saga_steps
from services.capture.app import SERVICE


def _order(order_id: uuid.UUID) -> PlaceOrder:
    return PlaceOrder.model_validate({
        "channel": "web", "channel_order_id": f"deadline-{order_id}", "currency": "EUR",
        "customer": {"customer_id": "C-1", "email": "c@example.org", "name": "C"},
        "lines": [{"sku": "SKU-1", "quantity": 1, "unit_price": "10.00"}],
        "delivery": {"type": "ship", "address": address().model_dump(mode="json")}})


async def _routing_past_its_deadline(conn, order_id: uuid.UUID) -> None:
    order = _order(order_id)
    await store.insert_orders(conn, [(order_id, order)])
    saga = saga_steps.Saga(order_id=order_id, state="routing", lines=(Line(sku="SKU-1", quantity=1),),
                           delivery=order.delivery, attempts=1)
    await store.save_sagas(conn, [(saga, f"corr-{order_id}", {})], step_timeout=0)


@pytest.fixture
async def capture_pool(capture_pool):
    """Removes the orders a test forged straight into capture's tables, with the RouteOrder the scanner staged
    for them: left behind, the services of the end-to-end tests later in the session would route them and cancel
    them (NO_ROUTE), and notification, never having seen them placed, has no one to tell."""
    yield capture_pool
    async with capture_pool.acquire() as conn:
        forged = [r["order_id"] for r in await conn.fetch(
            "SELECT order_id FROM orders WHERE channel_order_id LIKE 'deadline-%'")]
        for table in ("order_timeline", "order_sagas", "orders"):
            await conn.execute(f"DELETE FROM {table} WHERE order_id = ANY($1)", forged)
        await conn.execute("DELETE FROM outbox WHERE key = ANY($1)", [str(o) for o in forged])


async def test_a_saga_the_scanner_cannot_act_on_is_set_aside_and_the_others_move(config, capture_pool, monkeypatch):
    broken, fine = uuid.uuid4(), uuid.uuid4()
    async with capture_pool.acquire() as conn:
        await _routing_past_its_deadline(conn, broken)
        await _routing_past_its_deadline(conn, fine)

    on_timeout = saga_steps.on_timeout

    def failing_for_one(saga, now=None):
        if saga.order_id == broken:
            raise IndexError("a defect in one saga's rules")
        return on_timeout(saga, now)

    monkeypatch.setattr(saga_steps, "on_timeout", failing_for_one)
    failures = metrics.SAGA_DEADLINE_FAILURES._value.get()
    begin = units_of_work(capture_pool, "capture", frozenset(SERVICE.writes), config)

    await handlers._expire_due(begin, batch=1000)
    rows = await _deadlines(capture_pool, broken, fine)
    assert rows[fine]["attempts"] == 2  # RouteOrder sent again
    assert rows[broken]["attempts"] == 1
    assert rows[broken]["left"].total_seconds() > handlers.FAILED_DEADLINE_RETRY_SECONDS - 60
    assert metrics.SAGA_DEADLINE_FAILURES._value.get() == failures + 1
    await handlers._expire_due(begin, batch=1000)
    again = await _deadlines(capture_pool, broken, fine)
    assert {k: (r["attempts"], r["deadline_at"]) for k, r in again.items()} == {
        k: (r["attempts"], r["deadline_at"]) for k, r in rows.items()}  # neither was due again


async def test_a_message_that_moves_no_step_does_not_put_off_the_steps_deadline(config, capture_pool):
    """Found by the broker-restart fault test: an order waited in `reallocating` for an answer that never came, and
    its DeallocateReservation was never sent again: every refused edit (ORDER_BUSY, a few seconds apart) saved the
    saga, and every save set its deadline afresh."""
    order_id = uuid.uuid4()
    async with capture_pool.acquire() as conn:
        await _routing_past_its_deadline(conn, order_id)
        waiting = saga_steps.Saga(order_id=order_id, state="routing", lines=(Line(sku="SKU-1", quantity=1),),
                                  delivery=_order(order_id).delivery, attempts=1)
        await store.save_sagas(conn, [(waiting, f"corr-{order_id}", {})], step_timeout=600)  # an edit refused
    begin = units_of_work(capture_pool, "capture", frozenset(SERVICE.writes), config)

    await handlers._expire_due(begin, batch=1000)
    sent_again = (await _deadlines(capture_pool, order_id))[order_id]
    assert sent_again["attempts"] == 2  # RouteOrder sent again, on the deadline of the first sending
    assert sent_again["left"].total_seconds() > 0  # the second sending has a deadline of its own


async def _deadlines(pool, *order_ids: uuid.UUID) -> dict:
    async with pool.acquire() as conn:
        return {r["order_id"]: r for r in await conn.fetch(
            "SELECT order_id, attempts, deadline_at, deadline_at - statement_timestamp() AS left "
            "FROM order_sagas "
            "WHERE order_id = ANY($1)", list(order_ids))}
