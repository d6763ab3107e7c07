"""Background processes known by their pid files: the six services, and the supervisor that keeps them running."""

import json
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from shared.db.bootstrap import SERVICES
from shared.settings import (CONSOLE, CONSOLE_HTTP_PORT, DEFAULT_HTTP_PORTS, service_environment,
                             supervisor_environment)

from .env import ROOT

SIGKILL_BIT = 1 << (signal.SIGKILL - 1)


@dataclass(frozen=True)
class ServiceStatus:
    state: str  # running, restarting (the supervisor waits out its backoff) or stopped
    pid: int | None
    restarts: int = 0
    last_exit_code: int | None = None
    started_at: str | None = None


@dataclass(frozen=True)
class ServiceProcess:
    name: str
    run_dir: Path
    instance: int = 1  # several instances of a service share its consumer groups, each with its own member id
    http_port: int | None = None  # where it serves /health and /metrics; a free port if not given

    @property
    def label(self) -> str:
        return self.name if self.instance == 1 else f"{self.name}-{self.instance}"

    @property
    def pidfile(self) -> Path:
        return self.run_dir / f"{self.label}.pid"

    @property
    def logfile(self) -> Path:
        return self.run_dir / f"{self.label}.log"

    @property
    def portfile(self) -> Path:
        return self.run_dir / f"{self.label}.port"

    def url(self) -> str | None:
        try:
            return f"http://127.0.0.1:{int(self.portfile.read_text())}"
        except (FileNotFoundError, ValueError):
            return None

    @property
    def statusfile(self) -> Path:
        """Written by the supervisor; absent when the service runs unsupervised."""
        return self.run_dir / f"{self.label}.status.json"

    def pid(self) -> int | None:
        return _live_pid(self.pidfile)

    def start(self, env: dict[str, str] | None = None) -> int:
        if (pid := self.pid()) is not None:
            return pid
        return self.spawn(env).pid

    def spawn(self, env: dict[str, str] | None = None) -> subprocess.Popen:
        """A new process whatever runs already; the caller may wait on it, as the supervisor does."""
        self.run_dir.mkdir(parents=True, exist_ok=True)
        port = self.http_port or free_port()
        self.portfile.write_text(str(port))
        env = dict(service_environment(env or os.environ, self.name), OMS_INSTANCE_ID=str(self.instance),
                   OMS_HTTP_PORT=str(port))
        command = ["ops.console", str(self.run_dir)] if self.name == CONSOLE else [f"services.{self.name}"]
        proc = _spawn([sys.executable, "-m", *command], self.logfile, env)
        self.pidfile.write_text(str(proc.pid))
        return proc

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 20) -> None:
        _stop(self.pidfile, sig, timeout)

    def kill(self) -> None:
        """kill -9: the crash case the services must survive."""
        self.stop(signal.SIGKILL, timeout=5)

    def status(self) -> ServiceStatus:
        try:
            recorded = json.loads(self.statusfile.read_text())
        except (FileNotFoundError, ValueError):
            recorded = {}
        pid = self.pid()
        state = "running" if pid else "restarting" if recorded.get("state") == "restarting" else "stopped"
        return ServiceStatus(state, pid, recorded.get("restarts", 0), recorded.get("last_exit_code"),
                             recorded.get("started_at"))

    def record(self, status: ServiceStatus) -> None:
        """Replaced atomically, so a reader never sees half a file."""
        partial = self.statusfile.with_suffix(".tmp")
        partial.write_text(json.dumps(status.__dict__))
        partial.replace(self.statusfile)


@dataclass(frozen=True)
class SupervisorProcess:
    """`python -m ops.supervisor`, detached: it runs the services as its children and restarts them."""
    run_dir: Path

    @property
    def pidfile(self) -> Path:
        return self.run_dir / "supervisor.pid"

    @property
    def logfile(self) -> Path:
        return self.run_dir / "supervisor.log"

    def pid(self) -> int | None:
        return _live_pid(self.pidfile)

    def start(self, env: dict[str, str] | None = None, services: tuple[str, ...] = SERVICES, *,
              free_ports: bool = False) -> int:
        """free_ports: the services' HTTP ports are picked free rather than the fixed ones `oms up` uses (tests)."""
        if (pid := self.pid()) is not None:
            return pid
        flags = ["--free-ports"] if free_ports else []
        proc = _spawn([sys.executable, "-m", "ops.supervisor", str(self.run_dir), *flags, *services], self.logfile,
                      supervisor_environment(env or os.environ, services))
        self.pidfile.write_text(str(proc.pid))
        return proc.pid

    def stop(self, timeout: float = 40) -> None:
        """The supervisor stops its services before it exits, and restarts nothing once asked to stop."""
        _stop(self.pidfile, signal.SIGTERM, timeout)


def _spawn(command: list[str], logfile: Path, env: dict[str, str]) -> subprocess.Popen:
    logfile.parent.mkdir(parents=True, exist_ok=True)
    with logfile.open("ab") as log:
        return subprocess.Popen(command, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, start_new_session=True)


def _live_pid(pidfile: Path) -> int | None:
    try:
        pid = int(pidfile.read_text())
    except (FileNotFoundError, ValueError):
        return None
    return pid if _alive(pid) else None


def _stop(pidfile: Path, sig: int, timeout: float) -> None:
    pid = _live_pid(pidfile)
    if pid is None:
        pidfile.unlink(missing_ok=True)
        return
    os.kill(pid, sig)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            reaped, _ = os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:
            reaped = 0
        if reaped == pid or not _alive(pid):
            break
        time.sleep(0.05)
    else:
        os.kill(pid, signal.SIGKILL)
    pidfile.unlink(missing_ok=True)


def _alive(pid: int) -> bool:
    """Not a zombie, and not dying either: right after kill -9 the process exists for a moment with SIGKILL
    pending, and a start in that moment must not mistake it for the running service."""
    try:
        with open(f"/proc/{pid}/status") as status:
            fields = dict(line.split(":", 1) for line in status.read().splitlines() if ":" in line)
    except (FileNotFoundError, ProcessLookupError):
        return False
    pending = int(fields["SigPnd"], 16) | int(fields["ShdPnd"], 16)
    return fields["State"].split()[0] not in ("Z", "X") and not pending & SIGKILL_BIT


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def all_services(run_dir: Path, names: tuple[str, ...] = SERVICES, *, free_ports: bool = False) -> list[ServiceProcess]:
    ports = {**DEFAULT_HTTP_PORTS, CONSOLE: CONSOLE_HTTP_PORT}
    return [ServiceProcess(name, run_dir, http_port=None if free_ports else ports[name])
            for name in names]


@dataclass(frozen=True)
class MailSinkProcess:
    """`python -m ops.mailsink`, detached: the SMTP server `oms up` points the notification service at."""
    run_dir: Path
    mail_dir: Path
    port: int

    @property
    def pidfile(self) -> Path:
        return self.run_dir / "mailsink.pid"

    def pid(self) -> int | None:
        return _live_pid(self.pidfile)

    def start(self) -> int:
        if (pid := self.pid()) is not None:
            return pid
        proc = _spawn([sys.executable, "-m", "ops.mailsink", str(self.mail_dir), "--port", str(self.port)],
                      self.run_dir / "mailsink.log", supervisor_environment(os.environ, ()))
        self.pidfile.write_text(str(proc.pid))
        return proc.pid

    def stop(self) -> None:
        _stop(self.pidfile, signal.SIGTERM, timeout=5)
