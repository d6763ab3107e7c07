"""CPU per order in `oms bench` (ops/cpu.py): reading /proc/<pid>/stat and the arithmetic."""

import asyncio
import os

import pytest

from ops import cpu

# A real line's shape: comm in parentheses (it may hold spaces and parentheses), then state, ppid, ... utime
# (14th field), stime, cutime, cstime.
STAT = ("4242 (python -m (odd) x) S 17 4242 4242 0 -1 4194560 30535 0 0 0 "
        "700 300 50 25 20 0 3 0 1234 567890 1234 18446744073709551615 1 1 0 0 0 0 0 16781312 16386 0 0 0 17 1 0 0")


def test_parse_stat_counts_fields_after_the_command_name():
    stat = cpu.parse_stat(STAT)
    assert stat == cpu.Stat(ppid=17, own_ticks=1000, reaped_children_ticks=75)


def test_own_process_is_read_from_proc():
    stat = cpu.read_stat(os.getpid())
    assert stat is not None and stat.ppid == os.getppid()
    assert cpu.process_seconds(os.getpid()) == pytest.approx(stat.own_ticks / cpu.TICKS_PER_SECOND, abs=1)


def test_a_process_that_is_gone_has_no_figure():
    assert cpu.read_stat(2 ** 31 - 1) is None
    assert cpu.process_seconds(2 ** 31 - 1) is None


def test_a_tree_is_the_root_its_reaped_children_and_its_living_children():
    ticks = cpu.TICKS_PER_SECOND
    stats = {10: cpu.Stat(ppid=1, own_ticks=2 * ticks, reaped_children_ticks=3 * ticks),
             11: cpu.Stat(ppid=10, own_ticks=4 * ticks, reaped_children_ticks=0),
             12: cpu.Stat(ppid=11, own_ticks=100 * ticks, reaped_children_ticks=0),  # a grandchild: not counted
             13: cpu.Stat(ppid=1, own_ticks=100 * ticks, reaped_children_ticks=0)}
    assert cpu.tree_seconds(10, stats) == pytest.approx(9.0)
    assert cpu.tree_seconds(99, stats) is None


def test_per_order_is_milliseconds_of_cpu_per_order_in_the_window():
    result = cpu.per_order({"capture": 10.0, "routing": 2.0}, {"capture": 16.0, "routing": 2.5}, orders=2000)
    assert result.ms == {"capture": pytest.approx(3.0), "routing": pytest.approx(0.25)}
    assert result.total == pytest.approx(3.25)


def test_a_process_restarted_or_gone_in_the_window_has_no_figure():
    before = {"capture": 10.0, "routing": 5.0, "tracking": None}
    after = {"capture": 1.0, "routing": None, "tracking": 3.0}  # capture restarted: its counter began again
    result = cpu.per_order(before, after, orders=100)
    assert result.ms == {"capture": None, "routing": None, "tracking": None}
    assert result.total == 0


def test_no_orders_no_figure():
    assert cpu.per_order({"capture": 1.0}, {"capture": 2.0}, orders=0).ms == {"capture": None}


def test_table_puts_systems_side_by_side_and_totals_without_shared_processes():
    oms = cpu.CpuPerOrder({"capture": 2.0, "tracking": 1.0, "Kafka": 0.5})
    bare = cpu.CpuPerOrder({"capture": 0.25, "Kafka": 0.5})
    lines = cpu.table({"OMS": oms, "baseline": bare}, shared=frozenset({"Kafka"})).splitlines()
    assert lines[0].split() == ["CPU", "ms", "per", "order", "OMS", "baseline"]
    assert lines[1].split() == ["capture", "2.00", "0.25"]
    assert lines[2].split() == ["tracking", "1.00"]
    assert lines[3].split() == ["Kafka*", "0.50", "0.50"]
    assert lines[4].split()[-2:] == ["3.00", "0.25"]
    assert lines[5].startswith("*")


def test_sampler_reads_named_processes_and_trees():
    sample = cpu.sampler({"me": os.getpid()}, {"my tree": os.getpid()})()
    assert sample["me"] is not None and sample["my tree"] >= sample["me"]


def test_running_services_are_read_from_the_run_dir_with_their_extra_instances(tmp_path):
    from ops.bench import running_services

    for label in ("capture", "capture-2", "routing", "supervisor", "console", "mailsink"):
        (tmp_path / f"{label}.pid").write_text(str(os.getpid()))
    (tmp_path / "tracking.pid").write_text(str(2 ** 31 - 1))  # not running
    assert running_services(tmp_path) == {"capture": os.getpid(), "capture-2": os.getpid(), "routing": os.getpid()}


def test_database_counters_per_order():
    from ops.bench import per_order_counts

    before = {"commits": 100, "rows capture": 50, "rows bench": 7}
    after = {"commits": 1100, "rows capture": 2050, "rows bench": 7}
    assert per_order_counts(before, after, 500) == {"commits": 2.0, "rows capture": 4.0, "rows bench": 0.0}


def test_busy_cores_adds_up_what_the_processes_used_per_second():
    before = {"capture": 10.0, "routing": 4.0, "gone": 1.0, "restarted": 9.0}
    after = {"capture": 10.5, "routing": 4.25, "gone": None, "restarted": 0.5}
    assert cpu.busy_cores(before, after, seconds=0.5) == pytest.approx(1.5)


def test_idle_use_is_taken_off_for_the_length_of_the_window():
    idle = cpu.idle_cores({"capture": 1.0, "Kafka": 5.0}, {"capture": 1.1, "Kafka": 6.0}, seconds=2.0)
    assert idle == {"capture": pytest.approx(0.05), "Kafka": pytest.approx(0.5)}
    result = cpu.per_order({"capture": 10.0, "Kafka": 20.0}, {"capture": 13.0, "Kafka": 22.0}, orders=1000,
                           idle=idle, seconds=20.0)
    assert result.ms == {"capture": pytest.approx(2.0), "Kafka": 0.0}  # never below nothing


def test_processes_are_idle_again_near_their_idle_use_or_once_flat_and_low_before_it_is_known():
    assert not cpu.back_to_idle([], idle=0.3)
    assert not cpu.back_to_idle([1.9, 1.2, 0.5], idle=0.3), "still working through what the orders set off"
    assert cpu.back_to_idle([1.9, 1.2, 0.4], idle=0.3)
    assert not cpu.back_to_idle([0.4, 0.35], idle=None), "too short to tell"
    assert not cpu.back_to_idle([1.5, 1.5, 1.55], idle=None), "a lag worked through at a steady pace"
    assert not cpu.back_to_idle([0.9, 0.6, 0.4], idle=None), "still falling"
    assert cpu.back_to_idle([1.8, 0.45, 0.35, 0.4], idle=None), "idle polling: 0.2 to 0.45 cores on this machine"


def _measured(throughput: float, steady_rate: float, p99_ms: float, cpu_ms: float):
    from ops.bench import Measured, Result
    latencies = [p99_ms / 2] * 98 + [p99_ms] * 2
    return Measured(Result(int(throughput * 10), 10.0, []), Result(int(steady_rate * 10), 10.0, latencies),
                    cpu.CpuPerOrder({"capture": cpu_ms, "Postgres": 3.0}), {}, 0.1, [])


def test_several_runs_give_each_figure_as_median_and_range_and_judge_the_targets_on_the_medians():
    from ops.bench import spread
    runs = [(_measured(900, 500, 450, 2.0), _measured(1200, 500, 100, 1.0)),
            (_measured(1100, 510, 480, 2.2), _measured(1300, 500, 100, 1.0)),
            (_measured(1050, 505, 700, 2.1), _measured(1400, 500, 100, 1.0))]
    text = spread(runs)
    assert "OMS: 1050 (900–1100) orders/s saturated" in text
    assert "service CPU 2.10 (2.00–2.20) ms per order" in text
    assert "OMS / baseline 0.75 (0.75–0.85)" in text
    assert ">= 1,000 orders/s saturated: 1050, met" in text
    assert "OMS / baseline >= 0.7: 0.75, met" in text
    assert "p99 <= 500 ms at 500 orders/s: 480 ms, met" in text


def test_the_p99_target_is_judged_only_at_its_rate():
    from ops.bench import spread
    text = spread([(_measured(250, 120, 3000, 6.0), None), (_measured(240, 118, 3200, 6.2), None)])
    assert ">= 1,000 orders/s saturated: 245, not met" in text
    assert "baseline" not in text
    assert "p99 <= 500 ms at 500 orders/s: not judged, steady at 119/s" in text


def test_the_costliest_statements_are_those_that_took_the_most_time_in_the_window_per_order():
    from ops.bench import Statement, costliest_statements
    before = {1: Statement(10, 100.0, 50, "SELECT 1"), 2: Statement(0, 0, 0, "x")}
    after = {1: Statement(30, 120.0, 250, "SELECT  1"), 2: Statement(5, 500.0, 10, "UPDATE\n  t"),
             3: Statement(20, 40.0, 20, "INSERT")}
    assert costliest_statements(before, after, orders=10) == [
        Statement(0.5, 50.0, 1.0, "UPDATE t"), Statement(2.0, 4.0, 2.0, "INSERT"),
        Statement(2.0, 2.0, 20.0, "SELECT 1")]


async def test_a_baseline_worker_that_dies_fails_the_phase_at_once_instead_of_after_the_five_minute_wait():
    import subprocess
    import sys
    from types import SimpleNamespace

    from ops.bench import _workers_running, run_phase
    from ops.demo import sample_order

    dead = subprocess.Popen([sys.executable, "-c", "raise SystemExit(3)", "prefix.", "2", "6"])
    dead.wait()

    async def accepted(*_):
        return asyncio.sleep(0)

    sender = SimpleNamespace(producer=SimpleNamespace(send=accepted), settings=SimpleNamespace(topic=str))
    never_arrives = SimpleNamespace(arrived={})
    with pytest.raises(RuntimeError, match="hops 2 6 exited with 3"):
        await asyncio.wait_for(run_phase(sender, never_arrives, "bench.hop1.v1", [sample_order()],
                                         lambda _, i: i, None, lambda: _workers_running([dead])), timeout=10)
