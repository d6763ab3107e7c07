"""Starting and stopping the five services as background processes, with pid files and log files."""

import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from shared.db.bootstrap import SERVICES
from shared.settings import DEFAULT_HTTP_PORTS

from .env import ROOT


@dataclass(frozen=True)
class ServiceProcess:
    name: str
    run_dir: Path
    instance: int = 1  # several instances of a service share its consumer groups
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

    def pid(self) -> int | None:
        try:
            pid = int(self.pidfile.read_text())
        except (FileNotFoundError, ValueError):
            return None
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return None
        return pid

    def start(self, env: dict[str, str] | None = None) -> int:
        if (pid := self.pid()) is not None:
            return pid
        self.run_dir.mkdir(parents=True, exist_ok=True)
        port = self.http_port or _free_port()
        self.portfile.write_text(str(port))
        with self.logfile.open("ab") as log:
            proc = subprocess.Popen(
                [sys.executable, "-m", f"services.{self.name}"],
                cwd=ROOT, env={**(env or os.environ), "OMS_HTTP_PORT": str(port)}, stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL, start_new_session=True,
            )
        self.pidfile.write_text(str(proc.pid))
        return proc.pid

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 20) -> None:
        pid = self.pid()
        if pid is None:
            self.pidfile.unlink(missing_ok=True)
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
        self.pidfile.unlink(missing_ok=True)

    def kill(self) -> None:
        """kill -9: the crash case the services must survive."""
        self.stop(signal.SIGKILL, timeout=5)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().split()[2] != "Z"
    except FileNotFoundError:
        return False


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def all_services(run_dir: Path, names: tuple[str, ...] = SERVICES) -> list[ServiceProcess]:
    return [ServiceProcess(name, run_dir, http_port=DEFAULT_HTTP_PORTS[name]) for name in names]
