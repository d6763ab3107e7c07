"""`oms soak` in miniature: an OMS of its own at a steady rate for a few seconds, sampled every second: real
samples (memory of every service, latency of every window) judged, storage per order given, and nothing is violated.
Whether a few seconds of a fresh OMS pass the memory verdict is not asserted (warm-up is most of such a run);
tests/unit/test_soak.py checks the verdict's rules."""

import asyncpg
import pytest

from ops import invariants
from ops.soak import Soak
from shared.db.bootstrap import SERVICES

from ..support.stack import stack

pytestmark = pytest.mark.e2e


async def test_a_short_soak_samples_every_service_and_passes_its_own_verdict(config, tmp_path):
    async with stack(config, tmp_path) as oms:
        soak = Soak(oms.settings, oms.run_dir, rate=20, minutes=0.15, interval=1.0)
        verdict = await soak.run()
        assert len(soak.samples) >= 8
        assert all(set(sample.rss_kib) == set(SERVICES) for sample in soak.samples)
        assert sum(len(sample.latencies_ms) for sample in soak.samples) > 0.8 * len(soak.sent)
        assert [line.split()[0] for line in verdict.lines if " RSS " in line] == sorted(SERVICES)
        assert any(line.startswith("latency p99") for line in verdict.lines)
        assert any(line.startswith("capture") and "KiB/order" in line for line in verdict.lines)
        assert not [problem for problem in verdict.problems if "not running" in problem or "too short" in problem]
        conn = await asyncpg.connect(oms.settings.admin_dsn())
        try:  # its locations stop with it: what they had not shipped stays in flight, but nothing is violated
            report = await invariants.check(conn)
        finally:
            await conn.close()
        assert report.ok and report.orders >= len(soak.sent), report
