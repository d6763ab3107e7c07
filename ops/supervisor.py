"""Keeps the services running: each is a child of this process, waited on (no zombies) and started again when it
exits, after a capped exponential backoff that resets once the service has stayed up a while. A service that
is running but no longer answers its liveness probe (`/health/live`: a hung event loop, a stopped process) is
killed after a few missed probes, and so restarted too. Per service it records pid, state, restart count, last
exit code and start time in <run dir>/<service>.status.json for `oms status`. SIGTERM or SIGINT: restart
nothing more, stop the services, exit.

    python -m ops.supervisor RUN_DIR [--free-ports] [SERVICE ...]   (started detached by `oms up`)
"""

import os
import select
import signal
import subprocess
import sys
import time
import urllib.request
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
# Liveness: a probe every PROBE_EVERY seconds once a service has had START_GRACE to come up; MISSES_ALLOWED
# misses in a row and it is killed. (Environment overrides exist for the tests, which cannot wait minutes.)
PROBE_EVERY = float(os.environ.get("OMS_SUPERVISOR_PROBE_SECONDS", 5))
START_GRACE = float(os.environ.get("OMS_SUPERVISOR_START_GRACE_SECONDS", 60))
MISSES_ALLOWED = 3


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
    missed_probes: int = 0

    def start(self, env: dict[str, str]) -> None:
        self.child = self.proc.spawn(env)
        self.up_since, self.started_at = time.monotonic(), datetime.now(timezone.utc).isoformat()
        self.restart_due, self.missed_probes = None, 0
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

    def probe(self) -> None:
        """Kill a running service that has stopped answering; its exit is then handled like any crash."""
        if self.child is None or time.monotonic() - self.up_since < START_GRACE:
            return
        if _answers(self.proc.url()):
            self.missed_probes = 0
            return
        self.missed_probes += 1
        log.warning("service.probe_missed", child=self.proc.label, pid=self.child.pid, missed=self.missed_probes)
        if self.missed_probes >= MISSES_ALLOWED:
            log.error("service.unresponsive_killed", child=self.proc.label, pid=self.child.pid)
            self.child.kill()

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


def supervise(run_dir: Path, names: tuple[str, ...], env: dict[str, str], free_ports: bool) -> None:
    wakeups = Wakeups((signal.SIGCHLD, *STOP_SIGNALS))
    services = [Supervised(proc) for proc in all_services(run_dir, names, free_ports=free_ports)]
    for service in services:
        if (orphan := service.proc.pid()) is not None:
            log.warning("service.unsupervised_replaced", child=service.proc.label, pid=orphan)
            service.proc.stop()
        service.start(env)
    log.info("supervisor.started", services=list(names))
    next_probe = time.monotonic() + PROBE_EVERY
    while not wakeups.wait(_until_next(services, next_probe)) & STOP_SIGNALS:
        for service in services:
            if service.child and (code := service.child.poll()) is not None:
                service.exited(code)
            elif service.restart_due is not None and service.restart_due <= time.monotonic():
                service.start(env)
        if time.monotonic() >= next_probe:
            for service in services:
                service.probe()
            next_probe = time.monotonic() + PROBE_EVERY
    _stop_all(services, wakeups)


def _until_next(services: list[Supervised], next_probe: float) -> float:
    due = [s.restart_due for s in services if s.restart_due is not None]
    return max(0.0, min([*due, next_probe]) - time.monotonic())


def _answers(url: str | None) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/health/live", timeout=2) as response:
            return response.status == 200
    except (OSError, ValueError):
        return False


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
    run_dir, args = Path(sys.argv[1]), sys.argv[2:]
    free_ports = "--free-ports" in args
    names = tuple(a for a in args if a != "--free-ports") or SERVICES
    configure_logging("supervisor", os.environ.get("OMS_LOG_LEVEL", "INFO"))
    supervise(run_dir, names, dict(os.environ), free_ports)


if __name__ == "__main__":
    main()
