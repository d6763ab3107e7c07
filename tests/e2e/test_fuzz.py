"""Hostile input at volume (`oms fuzz`) against the five services as processes: every hostile message is refused
with a reason, every valid one has its effect, no service crashes or stalls, and the invariants hold.

CI runs a few hundred hostile messages per consumed topic; OMS_FUZZ_PER_TOPIC=10000 is the full run."""

import os

import pytest

from ops.fuzz import fuzz

pytestmark = pytest.mark.e2e

PER_TOPIC = int(os.environ.get("OMS_FUZZ_PER_TOPIC", "300"))
SEED = int(os.environ.get("OMS_FUZZ_SEED", "20261127"))


async def test_hostile_messages_are_refused_and_valid_ones_still_flow(config, oms):
    report = await fuzz(config, PER_TOPIC, SEED, processes=oms.values())
    print(report)
    assert report.ok, str(report)
