"""A second live process given a running one's instance id stops before it joins a consumer group, saying why:
two static members with one id fence each other for as long as both run."""

import asyncio
import os
import signal

import pytest

from ops.processes import ServiceProcess
from ops.waiting import eventually

from ..support.services import instance_lock_holder, instance_lock_name, running, wait_started

pytestmark = pytest.mark.integration


async def test_a_process_given_a_live_instance_id_stops_and_the_first_keeps_its_members(tmp_path, config):
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


async def test_a_process_whose_lock_session_ended_takes_it_again_and_a_twin_still_stops(tmp_path, config, admin):
    """Postgres restarted, or the session terminated: the lock went with the session, and a twin started then
    would have found the id free."""
    async with running(("routing",), tmp_path / "first") as procs:
        first = procs["routing"]
        holder = await eventually(lambda: instance_lock_holder(admin, config, first), what="the id's lock held")
        assert await admin.fetchval("SELECT pg_terminate_backend($1)", holder)

        async def held_by_a_new_session() -> bool:
            return await instance_lock_holder(admin, config, first) not in (None, holder)

        await eventually(held_by_a_new_session, what="the id's lock taken again by a new session")
        twin = ServiceProcess("routing", tmp_path / "twin")
        process = twin.spawn({**os.environ, "OMS_INSTANCE_WAIT_SECONDS": "1"})
        assert await asyncio.to_thread(process.wait, 60) != 0
        assert '"service.instance_id_in_use"' in twin.logfile.read_text()
        assert first.pid() is not None
        assert '"service.instance_lock_taken_again"' in first.logfile.read_text()


async def test_a_process_that_finds_its_id_taken_when_its_lock_session_ended_stops_saying_why(tmp_path, config,
                                                                                            admin):
    async with running(("routing",), tmp_path, {"OMS_INSTANCE_WAIT_SECONDS": "1"}) as procs:
        first = procs["routing"]
        holder = await eventually(lambda: instance_lock_holder(admin, config, first), what="the id's lock held")
        async with admin.acquire() as other:
            key = f"instance:{instance_lock_name(config, first)}"
            waiting = asyncio.create_task(other.execute("SELECT pg_advisory_lock(hashtextextended($1, 0))", key))
            await eventually(lambda: admin.fetchval(
                "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted"), what="a waiter queued")
            assert await admin.fetchval("SELECT pg_terminate_backend($1)", holder)
            await waiting  # Postgres hands the lock to the session queued for it as the holder's ends

            await eventually(lambda: first.pid() is None, timeout=30, what="the process to stop")
            await other.execute("SELECT pg_advisory_unlock_all()")
        log = first.logfile.read_text()
        assert '"service.instance_lock_lost"' in log
        assert '"service.instance_id_in_use"' in log
        assert '"service.stopped"' in log


async def test_a_lock_session_that_stops_answering_is_taken_for_ended_and_the_lock_taken_again(tmp_path, config,
                                                                                              admin):
    """Half-open: the session's backend frozen (SIGSTOP), as behind a partition, answers nothing and closes
    nothing; without asking it something the process would hold a lock it may no longer have for good."""
    async with running(("routing",), tmp_path) as procs:
        first = procs["routing"]
        holder = await eventually(lambda: instance_lock_holder(admin, config, first), what="the id's lock held")
        os.kill(holder, signal.SIGSTOP)
        try:
            await eventually(lambda: '"service.instance_session_silent"' in first.logfile.read_text(), timeout=40,
                             what="the silent session taken for ended")
        finally:
            os.kill(holder, signal.SIGCONT)  # it then finds its client gone, and its lock goes with it

        async def held_by_a_new_session() -> bool:
            return await instance_lock_holder(admin, config, first) not in (None, holder)

        await eventually(held_by_a_new_session, what="the id's lock taken again by a new session")
        assert first.pid() is not None
        assert '"service.instance_lock_taken_again"' in first.logfile.read_text()
