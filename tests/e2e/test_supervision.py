"""A crash does not stay a crash: starting right after kill -9 starts a new process, and the supervisor restarts a
killed service."""

import os
import signal
from pathlib import Path

import pytest

from ops.waiting import eventually

from ..support.services import supervised, wait_started
from ..support.stack import stack

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

