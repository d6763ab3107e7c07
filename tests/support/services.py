"""Running OMS services as real processes in a test, with their logs kept for a failing test's report."""

import os
from contextlib import asynccontextmanager
from pathlib import Path

from ops.processes import ServiceProcess

from ops.waiting import eventually


async def wait_started(proc: ServiceProcess, timeout: float = 60) -> None:
    async def started():
        if proc.pid() is None:
            raise AssertionError(f"{proc.name} exited:\n{_tail(proc.logfile)}")
        return proc.logfile.exists() and '"service.started"' in proc.logfile.read_text(errors="replace")

    await eventually(started, timeout=timeout, what=f"{proc.name} to start")


@asynccontextmanager
async def running(names: tuple[str, ...], run_dir: Path):
    procs = {name: ServiceProcess(name, run_dir) for name in names}
    try:
        for proc in procs.values():
            proc.start(dict(os.environ))
        for proc in procs.values():
            await wait_started(proc)
        yield procs
    finally:
        for proc in procs.values():
            proc.stop()


def _tail(path: Path, lines: int = 40) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except FileNotFoundError:
        return "(no log)"
