"""Faults while orders flow: kill -9 of each service, broker and database restarts, a consumer-group
rebalance. Afterwards every order has settled exactly once and the invariant checker finds nothing."""

import asyncio
import os
import subprocess

import asyncpg
import pytest

from ops.env import ROOT
from ops.waiting import eventually
from shared.db.bootstrap import SERVICES
from shared.messaging.instance import session_name

from ..support.load_mix import ORDERS, flow_with_fault
from ..support.services import instance_lock_holders, instance_lock_name
from ..support.stack import stack

pytestmark = pytest.mark.e2e

local_only = pytest.mark.skipif(os.environ.get("OMS_TEST_INFRA") == "testcontainers",
                                reason="restarts the broker and database through the local scripts")


@pytest.fixture
async def oms(config, tmp_path):
    async with stack(config, tmp_path) as running:
        yield running


async def test_kill_9_each_service_in_turn(oms):
    async def kill_each():
        for name in SERVICES:
            await oms.crash(name)

    report, _ = await flow_with_fault(oms, kill_each)
    assert report.settled == report.orders >= ORDERS  # the mix and the replacements of its exchanges


@local_only
@pytest.mark.parametrize("script", ["kafka.sh", "postgres.sh"], ids=["kafka_broker", "postgres"])
async def test_restart_of_shared_infrastructure(oms, script):
    async def restart():
        await asyncio.to_thread(_deploy, script, "stop")
        await asyncio.sleep(1)
        await asyncio.to_thread(_deploy, script, "start")

    await flow_with_fault(oms, restart)
    if script == "postgres.sh":  # the services' instance locks went with their sessions: each holds its own again
        await eventually(lambda: _all_instance_locks_held(oms), what="every instance lock held again")


async def _all_instance_locks_held(oms) -> bool:
    conn = await asyncpg.connect(oms.settings.admin_dsn())
    try:
        held = await instance_lock_holders(conn)
    finally:
        await conn.close()
    return all(session_name(instance_lock_name(oms.settings, proc)) in held for proc in oms.procs.values())


async def test_rebalance_when_instances_join_and_leave(oms):
    async def second_instances():
        for name in ("capture", "inventory"):
            await oms.start(name, instance=2)
        await asyncio.sleep(1.5)
        for name in ("capture-2", "inventory-2"):
            oms.stop(name)

    await flow_with_fault(oms, second_instances)


def _deploy(script: str, action: str) -> None:
    done = subprocess.run([str(ROOT / "deploy" / script), action], capture_output=True, text=True)
    assert done.returncode == 0, f"{script} {action} failed:\n{done.stdout}{done.stderr}"
