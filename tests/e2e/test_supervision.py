"""A crash does not stay a crash: starting right after kill -9 starts a new process, the supervisor restarts a
killed service, and a restarted capture accepts orders again within 5 s of the kill."""

import os
import signal

import pytest

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
