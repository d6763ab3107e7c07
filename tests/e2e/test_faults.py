"""Faults while orders flow: kill -9 of each service, broker and database restarts, a consumer-group
rebalance. Afterwards every order has settled exactly once and the invariant checker finds nothing."""

import asyncio
import os
import subprocess
from collections.abc import Awaitable, Callable

import asyncpg
import pytest

from ops import invariants, load
from ops.client import client
from ops.env import ROOT
from ops.simulators import CustomerSimulator, LocationSimulator
from shared.db.bootstrap import SERVICES

from ..support.stack import Stack, stack
from ops.waiting import eventually

pytestmark = pytest.mark.e2e

ORDERS = 150
RATE = 40.0  # orders/s: the flow lasts long enough for the fault to land in the middle of it

local_only = pytest.mark.skipif(os.environ.get("OMS_TEST_INFRA") == "testcontainers",
                                reason="restarts the broker and database through the local scripts")


def rejects_some(work: dict) -> bool:
    """The first warehouse short-picks about a quarter of its work, so re-routing happens under faults too."""
    return work["location_id"].endswith("-WH1") and int(work["fulfillment_order_id"][:2], 16) % 4 == 0


async def flow_with_fault(oms: Stack, fault: Callable[[], Awaitable[None]]) -> invariants.Report:
    network = load.Network(load.run_tag(), units=500, scarce_units=15)
    stream = load.stream(network, ORDERS)  # the orders, then the receipt the preorders among them wait for
    async with client(oms.settings, "test/load") as channel:
        await load.seed(channel, network)
        simulator = LocationSimulator(oms.settings, channel, reject=rejects_some, group=f"sim-{network.tag}")
        customers = CustomerSimulator(oms.settings, channel, group=f"customers-{network.tag}")
        locations = asyncio.gather(simulator.run(), customers.run())
        try:
            await asyncio.gather(load.publish(channel, stream, RATE), _after(1.0, fault))
            report = await settled(oms, ORDERS)
        finally:
            locations.cancel()
            await asyncio.gather(locations, return_exceptions=True)
    assert any(report.by_state.get(s) for s in invariants.HANDED_OVER) and report.by_state.get("cancelled"), \
        "the mix ships some, cancels some"
    assert simulator.rejected, "some work was rejected and re-routed"
    assert customers.requested, "some orders were sent back"
    return report


async def _after(delay: float, fault: Callable[[], Awaitable[None]]) -> None:
    await asyncio.sleep(delay)
    await fault()


async def settled(oms: Stack, expected_orders: int) -> invariants.Report:
    conn = await asyncpg.connect(oms.settings.admin_dsn())
    try:
        async def clean_report():
            report = await invariants.check(conn)
            return report if report.orders == expected_orders and not report.in_flight and report.ok else None

        try:
            report = await eventually(clean_report, timeout=150, interval=1.0, what="every order to settle cleanly")
        except TimeoutError:
            print(await invariants.check(conn))
            raise
    finally:
        await conn.close()
    assert await invariants.check_topics(oms.settings) == []
    return report


@pytest.fixture
async def oms(config, tmp_path):
    async with stack(config, tmp_path) as running:
        yield running


async def test_kill_9_each_service_in_turn(oms):
    async def kill_each():
        for name in SERVICES:
            await oms.crash(name)

    report = await flow_with_fault(oms, kill_each)
    assert report.settled == ORDERS


@local_only
@pytest.mark.parametrize("script", ["kafka.sh", "postgres.sh"], ids=["kafka_broker", "postgres"])
async def test_restart_of_shared_infrastructure(oms, script):
    async def restart():
        await asyncio.to_thread(_deploy, script, "stop")
        await asyncio.sleep(1)
        await asyncio.to_thread(_deploy, script, "start")

    await flow_with_fault(oms, restart)


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
