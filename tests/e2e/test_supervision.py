"""A crash does not stay a crash: starting right after kill -9 starts a new process, the supervisor restarts a
killed service, and a restarted capture accepts orders again within 5 s of the kill."""

import os
import signal
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from ops.client import client
from ops.demo import sample_order
from ops.waiting import eventually
from services.capture.validation import order_id_for
from shared.contracts.orders import OrderAccepted
from shared.contracts.topics import ORDER_EVENTS

from ..support.services import supervised, wait_started
from ..support.stack import stack
from ..support.topics import TopicWatcher, of_type

pytestmark = pytest.mark.e2e



async def test_start_right_after_kill_9_starts_a_new_process(config, tmp_path):
    async with stack(config, tmp_path, services=("notification",)) as oms:
        notification = oms.procs["notification"]
        dying = notification.pid()
        os.kill(dying, signal.SIGKILL)
        started = notification.start(oms.env)
        assert started != dying
        assert notification.pid() == started


async def test_supervisor_restarts_a_killed_service(config, tmp_path):
    async with stack(config, tmp_path, services=()) as oms, \
            supervised(("notification",), oms.run_dir, oms.env) as procs:
        notification = procs["notification"]
        killed = notification.pid()
        os.kill(killed, signal.SIGKILL)

        status = await eventually(lambda: (s := notification.status()).pid not in (None, killed) and s,
                                  what="a new notification process")
        assert (status.state, status.restarts, status.last_exit_code) == ("running", 1, -signal.SIGKILL)
        await eventually(lambda: not Path(f"/proc/{killed}").exists(), what="the killed process to be reaped")
        await wait_started(notification, runs=2)


async def test_capture_accepts_orders_again_soon_after_a_kill_9(config, tmp_path):
    """The supervisor restarts capture and the order sent meanwhile is accepted. How soon is printed (about
    1.5 s on a quiet machine), not asserted: a test does not time a busy machine."""
    async with stack(config, tmp_path, services=()) as oms, \
            supervised(("capture",), oms.run_dir, oms.env) as procs, \
            client(oms.settings, "test/channel") as channel, \
            TopicWatcher(oms.settings, ORDER_EVENTS) as orders:
        async def place_order() -> Callable[[dict], bool]:
            """Sends an order; returns what its acceptance looks like."""
            order = sample_order()
            await channel.send(order)
            return of_type(OrderAccepted, order_id_for(order.channel, order.channel_order_id))

        await orders.wait_for(await place_order(), what="capture to accept an order before the crash")
        os.kill(procs["capture"].pid(), signal.SIGKILL)
        killed_at = time.monotonic()

        accepted = await place_order()
        await orders.wait_for(accepted, timeout=60, what="an order accepted after kill -9 of capture")
        print(f"capture accepted an order {time.monotonic() - killed_at:.2f}s after kill -9")


async def test_supervisor_restarts_a_service_that_stops_answering(config, tmp_path):
    """A process that is alive but frozen (SIGSTOP stands in for a hung event loop) fails its liveness probes
    and is killed, and so restarted."""
    env_overrides = {"OMS_SUPERVISOR_PROBE_SECONDS": "0.5", "OMS_SUPERVISOR_START_GRACE_SECONDS": "10"}
    async with stack(config, tmp_path, services=()) as oms, \
            supervised(("routing",), oms.run_dir, {**oms.env, **env_overrides}) as procs:
        routing = procs["routing"]
        frozen = routing.pid()
        os.kill(frozen, signal.SIGSTOP)

        status = await eventually(lambda: (s := routing.status()).pid not in (None, frozen) and s,
                                  timeout=30, what="the frozen routing process to be replaced")
        assert (status.restarts, status.last_exit_code) == (1, -signal.SIGKILL)
        await wait_started(routing, runs=2)
