"""`oms latency`'s reading of the topics: each hop's delay to the consumer and the relay's, from Kafka timestamps
and envelope times."""

from datetime import UTC, datetime, timedelta

from pytest import approx

from ops.latency import CONFIRM_PATH, delays, hop_table

T0 = datetime(2026, 11, 28, 12, tzinfo=UTC)


def envelope(id_: str, name: str, staged_ms: float, cause: str | None = None) -> dict:
    return {"id": id_, "type": f"oms.test.{name}.v1", "time": (T0 + timedelta(milliseconds=staged_ms)).isoformat(),
            "causationid": cause}


def published(ms: float) -> float:
    return (T0 + timedelta(milliseconds=ms)).timestamp()


def test_each_hop_splits_into_the_relay_and_the_way_to_the_consumer():
    records = [
        (published(0), envelope("a", "PlaceOrder", 0)),
        (published(30), envelope("b", "ReserveStock", 20, cause="a")),  # consumer 20 ms, relay 10 ms
        (published(31), envelope("b", "ReserveStock", 20, cause="a")),  # a party's copy: counted once
        (published(60), envelope("c", "StockReserved", 45, cause="b")),  # consumer 15 ms, relay 15 ms
    ]
    found = delays(records)
    assert found.consumer[("PlaceOrder", "ReserveStock")] == approx([20.0], abs=0.01)
    assert found.consumer[("ReserveStock", "StockReserved")] == approx([15.0], abs=0.01)
    assert found.relay["ReserveStock"] == approx([10.0], abs=0.01)
    assert found.relay["StockReserved"] == approx([15.0], abs=0.01)


def test_a_message_whose_cause_was_not_seen_has_only_its_relay_delay():
    found = delays([(published(50), envelope("x", "OrderRouted", 40, cause="not-on-any-topic"))])
    assert found.relay == {"OrderRouted": approx([10.0], abs=0.01)}
    assert found.consumer == {}


def test_the_table_adds_up_the_confirm_paths_medians_and_names_hops_it_did_not_see():
    records, at, previous = [], 0.0, None
    for cause, effect in [(None, CONFIRM_PATH[0][0]), *CONFIRM_PATH[:3]]:
        records.append((published(at + 5), envelope(effect, effect, at, cause=previous)))
        previous, at = effect, at + 15  # 10 ms to the consumer, 5 ms relay
    table = hop_table(delays(records))
    assert "PlaceOrder → ReserveStock" in table and "10 / 10" in table
    assert "not seen" in table.splitlines()[4]  # AllocateReservation → ReservationAllocated never happened
    assert table.splitlines()[-1].split()[-1] == str(3 * (10 + 5))


def _run(rate: float, p50: float, p99: float, services_ms: float):
    from ops.cpu import CpuPerOrder
    from ops.latency import Delays, Run
    return Run(rate, 1000, p50, p99 * 0.9, p99, 7.0,
               CpuPerOrder({"capture": services_ms, "Postgres": 9.0, "Kafka": 4.0}), Delays({}, {}))


def test_several_runs_give_each_figure_as_median_and_range_and_judge_the_p50_target_on_the_median():
    from ops.latency import spread
    text = spread([_run(50, 90, 300, 20.0), _run(50, 120, 400, 22.0), _run(50, 95, 350, 21.0)])
    assert "p50 95 (90–120) ms, p99 350 (300–400) ms; service CPU 21.00 (20.00–22.00) ms per order" in text
    assert "Postgres 9.00 (9.00–9.00), Kafka 4.00 (4.00–4.00)" in text
    assert "p50 <= 100 ms at 50 orders/s: 95 ms, met" in text
    assert "p50 <= 100 ms at 50 orders/s: 700 ms, not met" in spread([_run(50, 700, 1200, 22.0)] * 2)


def test_the_p50_target_is_judged_only_at_its_rate():
    from ops.latency import spread
    assert "not judged at 20/s" in spread([_run(20, 250, 500, 55.0)] * 3)


def test_messages_published_before_the_measured_orders_are_left_out():
    records = [
        (published(0), envelope("w", "PlaceOrder", 0)),  # a warm-up order's
        (published(30), envelope("x", "ReserveStock", 20, cause="w")),
        (published(100), envelope("a", "PlaceOrder", 100)),
        (published(130), envelope("b", "ReserveStock", 115, cause="a")),
    ]
    found = delays(records, since=published(100))
    assert found.consumer == {("PlaceOrder", "ReserveStock"): approx([15.0], abs=0.01)}
    assert found.relay["ReserveStock"] == approx([15.0], abs=0.01)
