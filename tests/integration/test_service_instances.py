"""A second live process given a running one's instance id stops before it joins a consumer group, saying why:
two static members with one id fence each other for as long as both run."""

import asyncio
import os

import pytest

from ops.processes import ServiceProcess

from ..support.services import running, wait_started

pytestmark = pytest.mark.integration


async def test_a_process_given_a_live_instance_id_stops_and_the_first_keeps_its_members(tmp_path):
    async with running(("routing",), tmp_path / "first") as procs:
        first = procs["routing"]
        twin = ServiceProcess("routing", tmp_path / "twin")  # the same instance id, a pid file and log of its own
        process = twin.spawn({**os.environ, "OMS_INSTANCE_WAIT_SECONDS": "1"})
        exit_code = await asyncio.to_thread(process.wait, 60)

        log = twin.logfile.read_text()
        assert exit_code != 0
        assert '"service.instance_id_in_use"' in log and "OMS_INSTANCE_ID" in log
        assert '"service.started"' not in log
        assert first.pid() is not None
        assert "fenced" not in first.logfile.read_text().lower()

    twin.start()  # the first one gone, its id is free at once
    try:
        await wait_started(twin)
    finally:
        twin.stop()
