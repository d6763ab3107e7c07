"""Running OMS services as real processes in a test, with their logs kept for a failing test's report."""

import asyncio
import os
from collections.abc import Iterable
from contextlib import asynccontextmanager
from pathlib import Path

import asyncpg

from ops.processes import ServiceProcess, SupervisorProcess
from ops.waiting import eventually
from shared.messaging.instance import session_name
from shared.messaging.service import consumer_group_prefix
from shared.settings import Settings


async def wait_started(proc: ServiceProcess, timeout: float = 60, *, runs: int = 1) -> None:
    """Until the log shows `runs` start-ups (a restarted service appends to the same log)."""
    async def started():
        if proc.pid() is None:
            raise AssertionError(f"{proc.name} exited:\n{_tail(proc.logfile)}")
        return proc.logfile.exists() and proc.logfile.read_text(errors="replace").count('"service.started"') >= runs

    await eventually(started, timeout=timeout, what=f"{proc.name} to start")


@asynccontextmanager
async def running(names: tuple[str, ...], run_dir: Path, env: dict[str, str] | None = None,
                  ports: dict[str, int] | None = None):
    """The services as processes, with these settings over the test run's environment; HTTP on the given ports
    (a free one for a service not named)."""
    procs = {name: ServiceProcess(name, run_dir, http_port=(ports or {}).get(name)) for name in names}
    try:
        for proc in procs.values():
            proc.start({**os.environ, **(env or {})})
        for proc in procs.values():
            await wait_started(proc)
        yield procs
    finally:
        await stop_all(procs.values())


async def stop_all(procs: Iterable[ServiceProcess]) -> None:
    """At once, and off the event loop: the test's own servers (mail, webhooks) run on it, and a stopping service
    may still be talking to them (a blocked loop held notification's QUIT until it was killed)."""
    await asyncio.gather(*(asyncio.to_thread(proc.stop) for proc in procs))


@asynccontextmanager
async def supervised(names: tuple[str, ...], run_dir: Path, env: dict[str, str]):
    """The services as `oms up` runs them: children of a supervisor that restarts them."""
    supervisor = SupervisorProcess(run_dir)
    supervisor.start(env, names, free_ports=True)
    procs = {name: ServiceProcess(name, run_dir) for name in names}
    try:
        await eventually(lambda: all(proc.pid() for proc in procs.values()), timeout=30,
                         what=f"the supervisor to start {names}:\n{_tail(supervisor.logfile)}")
        for proc in procs.values():
            await wait_started(proc)
        yield procs
    finally:
        await asyncio.to_thread(supervisor.stop)


def _tail(path: Path, lines: int = 40) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except FileNotFoundError:
        return "(no log)"


def instance_lock_name(settings: Settings, proc: ServiceProcess) -> str:
    """What the process holds while it runs (shared/messaging/instance.py), as service.instance_name makes it."""
    return f"{settings.topic_prefix}{consumer_group_prefix(proc.name)}{proc.instance}"


async def instance_lock_holders(db: asyncpg.Pool | asyncpg.Connection) -> dict[str, int]:
    """The sessions holding an instance lock: application name -> backend pid."""
    rows = await db.fetch("""SELECT a.application_name, a.pid FROM pg_locks l JOIN pg_stat_activity a USING (pid)
                             WHERE l.locktype = 'advisory' AND l.granted AND a.application_name LIKE 'instance %'""")
    return {row["application_name"]: row["pid"] for row in rows}


async def instance_lock_holder(db: asyncpg.Pool, settings: Settings, proc: ServiceProcess) -> int | None:
    return (await instance_lock_holders(db)).get(session_name(instance_lock_name(settings, proc)))
