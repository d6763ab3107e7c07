"""`oms soak` in miniature: an OMS of its own at a steady rate for a few seconds, sampled every second: real
samples (memory of every service, latency of every window) judged, storage per order given, and every order settles.
Whether a few seconds of a fresh OMS pass the memory verdict is not asserted (warm-up is most of such a run);
tests/unit/test_soak.py checks the verdict's rules."""

import pytest

from ops import invariants
from ops.bench import running_services
from ops.soak import Soak
from shared.db.bootstrap import SERVICES

from ..support.stack import stack

pytestmark = pytest.mark.e2e


async def test_a_short_soak_samples_every_service_and_passes_its_own_verdict(config, tmp_path):
    async with stack(config, tmp_path) as oms:
        soak = Soak(oms.settings, lambda: running_services(oms.run_dir), rate=20, minutes=0.15, interval=1.0)
        verdict = await soak.run()
        assert len(soak.samples) >= 8
        assert all(set(sample.rss_kib) == set(SERVICES) for sample in soak.samples)
        assert sum(len(sample.latencies_ms) for sample in soak.samples) == len(soak.sent) == 180  # every one measured
        assert [line.split()[0] for line in verdict.lines if " RSS " in line] == sorted(SERVICES)
        assert any(line.startswith("latency p99") for line in verdict.lines)
        assert any(line.startswith("capture") and "KiB/order" in line for line in verdict.lines)
        assert not [problem for problem in verdict.problems if "not running" in problem or "too short" in problem]
        assert soak.settled.ok and soak.unsettled == 0, soak.settled  # the soak's orders, and its exchanges
        assert await invariants.check_topics(oms.settings) == []
