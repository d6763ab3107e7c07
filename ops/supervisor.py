"""Keeps the services running: each is a child of this process, waited on (no zombies) and started again when it
exits, after a capped exponential backoff that resets once the service has stayed up a while. Per service it
records pid, state, restart count, last exit code and start time in <run dir>/<service>.status.json for
`oms status`. SIGTERM or SIGINT: restart nothing more, stop the services, exit.

    python -m ops.supervisor RUN_DIR [SERVICE ...]      (started detached by `oms up` / `oms services start`)
"""

import os
import select
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from shared.db.bootstrap import SERVICES
from shared.logging import configure_logging, get_logger

from .processes import ServiceProcess, ServiceStatus, all_services

log = get_logger(__name__)

FIRST_BACKOFF = 0.5  # seconds before the first restart: quick, the crash may be a one-off
MAX_BACKOFF = 30.0
STABLE_AFTER = 30.0  # a service up this long has recovered: its next crash starts the backoff afresh
STOP_TIMEOUT = 20.0
STOP_SIGNALS = {signal.SIGTERM, signal.SIGINT}


@dataclass
class Supervised:
    proc: ServiceProcess
    child: subprocess.Popen | None = None
    up_since: float = 0.0  # monotonic
    started_at: str | None = None
    restarts: int = 0
    crashes_in_a_row: int = 0  # counting only exits that came before STABLE_AFTER
    restart_due: float | None = None
    last_exit_code: int | None = None

    def start(self, env: dict[str, str]) -> None:
        self.child = self.proc.spawn(env)
        self.up_since, self.started_at = time.monotonic(), datetime.now(timezone.utc).isoformat()
        self.restart_due = None
        self.record("running")
        log.info("service.spawned", child=self.proc.label, pid=self.child.pid, restarts=self.restarts)

    def exited(self, code: int) -> None:
        now = time.monotonic()
        uptime = now - self.up_since
        self.crashes_in_a_row = 1 if uptime >= STABLE_AFTER else self.crashes_in_a_row + 1
        delay = min(MAX_BACKOFF, FIRST_BACKOFF * 2 ** (self.crashes_in_a_row - 1))
        self.child, self.last_exit_code = None, code
        self.restart_due, self.restarts = now + delay, self.restarts + 1
        self.record("restarting")
        log.warning("service.exited", child=self.proc.label, exit_code=code, uptime=round(uptime, 1),
                    restart_in=delay)

    def record(self, state: str) -> None:
        pid = self.child.pid if self.child else None
        self.proc.record(ServiceStatus(state, pid, self.restarts, self.last_exit_code, self.started_at))


class Wakeups:
    """Signals as bytes on a pipe: the loop sleeps in select() until a child exits, a stop is asked for, or the
    next restart is due. (Blocking the signals instead would leave them blocked in the children.)"""

    def __init__(self, signals: tuple[int, ...]):
        self._reader, writer = os.pipe()
        for fd in (self._reader, writer):
            os.set_blocking(fd, False)
        signal.set_wakeup_fd(writer)
        for sig in signals:
            signal.signal(sig, lambda *_: None)

    def wait(self, timeout: float | None) -> set[int]:
        readable, _, _ = select.select([self._reader], [], [], timeout)
        return set(os.read(self._reader, 1024)) if readable else set()


def supervise(run_dir: Path, names: tuple[str, ...], env: dict[str, str]) -> None:
    wakeups = Wakeups((signal.SIGCHLD, *STOP_SIGNALS))
    services = [Supervised(proc) for proc in all_services(run_dir, names)]
    for service in services:
        if (orphan := service.proc.pid()) is not None:
            log.warning("service.unsupervised_replaced", child=service.proc.label, pid=orphan)
            service.proc.stop()
        service.start(env)
    log.info("supervisor.started", services=list(names))
    while not wakeups.wait(_until_next_restart(services)) & STOP_SIGNALS:
        for service in services:
            if service.child and (code := service.child.poll()) is not None:
                service.exited(code)
            elif service.restart_due is not None and service.restart_due <= time.monotonic():
                service.start(env)
    _stop_all(services, wakeups)


def _until_next_restart(services: list[Supervised]) -> float | None:
    due = [s.restart_due for s in services if s.restart_due is not None]
    return max(0.0, min(due) - time.monotonic()) if due else None


def _stop_all(services: list[Supervised], wakeups: Wakeups) -> None:
    log.info("supervisor.stopping")
    running = [s for s in services if s.child]
    for service in running:
        service.child.terminate()
    deadline = time.monotonic() + STOP_TIMEOUT
    while any(s.child.poll() is None for s in running) and time.monotonic() < deadline:
        wakeups.wait(max(0.0, deadline - time.monotonic()))
    for service in running:
        if service.child.poll() is None:
            service.child.kill()
        service.last_exit_code = service.child.wait()
    for service in services:
        service.child, service.restart_due = None, None
        service.record("stopped")
        service.proc.pidfile.unlink(missing_ok=True)
    log.info("supervisor.stopped")


def main() -> None:
    run_dir, names = Path(sys.argv[1]), tuple(sys.argv[2:]) or SERVICES
    configure_logging("supervisor", os.environ.get("OMS_LOG_LEVEL", "INFO"))
    supervise(run_dir, names, dict(os.environ))


if __name__ == "__main__":
    main()
