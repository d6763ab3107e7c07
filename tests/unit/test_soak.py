"""The soak's verdict (pure): memory flat after warm-up, latency not drifting."""

import os

from ops.soak import Sample, judge, resident_kib


def run(rss: list[int], latencies: list[list[float]]) -> list[Sample]:
    return [Sample(at=i, rss_kib={"capture": kib, "routing": 50_000}, latencies_ms=ms)
            for i, (kib, ms) in enumerate(zip(rss, latencies, strict=True))]


FLAT_LATENCY = [[20.0, 30.0, 40.0]] * 10


def test_memory_that_settles_after_warm_up_passes():
    verdict = judge(run([10_000, 60_000, 100_000, 101_000, 100_500, 102_000, 101_000, 103_000, 104_000, 105_000],
                        FLAT_LATENCY))
    assert verdict.passed, verdict.problems
    assert any(line.startswith("capture") and "+" in line for line in verdict.lines)


def test_memory_that_keeps_growing_fails():
    verdict = judge(run([100_000 + i * 4_000 for i in range(10)], FLAT_LATENCY))
    assert [p for p in verdict.problems if p.startswith("capture: resident memory grew")]
    assert not [p for p in verdict.problems if p.startswith("routing")]


def test_latency_that_drifts_fails_and_a_little_noise_does_not():
    drifting = [[20.0, 30.0, 40.0]] * 5 + [[200.0, 300.0, 400.0]] * 5
    assert any(p.startswith("latency drifted") for p in judge(run([100_000] * 10, drifting)).problems)
    noisy = [[20.0, 30.0, 40.0]] * 5 + [[25.0, 35.0, 60.0]] * 5
    assert judge(run([100_000] * 10, noisy)).passed


def test_a_process_that_restarted_or_a_run_too_short_is_not_judged_as_passing():
    samples = run([100_000] * 10, FLAT_LATENCY)
    del samples[6].rss_kib["routing"]
    assert any("routing: not running" in p for p in judge(samples).problems)
    assert not judge(run([100_000] * 3, FLAT_LATENCY[:3])).passed


def test_resident_memory_of_a_live_process_and_of_none():
    assert resident_kib(os.getpid()) > 1000
    assert resident_kib(2 ** 22 + 12345) is None
