"""Starting and stopping the five services as background processes, with pid files and log files."""

import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from shared.db.bootstrap import SERVICES

from .env import ROOT

SIGKILL_BIT = 1 << (signal.SIGKILL - 1)


@dataclass(frozen=True)
class ServiceProcess:
    name: str
    run_dir: Path
    instance: int = 1  # several instances of a service share its consumer groups

    @property
    def label(self) -> str:
        return self.name if self.instance == 1 else f"{self.name}-{self.instance}"

    @property
    def pidfile(self) -> Path:
        return self.run_dir / f"{self.label}.pid"

    @property
    def logfile(self) -> Path:
        return self.run_dir / f"{self.label}.log"

    def pid(self) -> int | None:
        try:
            pid = int(self.pidfile.read_text())
        except (FileNotFoundError, ValueError):
            return None
        return pid if _alive(pid) else None

    def start(self, env: dict[str, str] | None = None) -> int:
        if (pid := self.pid()) is not None:
            return pid
        self.run_dir.mkdir(parents=True, exist_ok=True)
        with self.logfile.open("ab") as log:
            proc = subprocess.Popen(
                [sys.executable, "-m", f"services.{self.name}"],
                cwd=ROOT, env=env or os.environ.copy(), stdout=log, stderr=subprocess.STDOUT,
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
    """Not a zombie, and not dying either: right after kill -9 the process exists for a moment with SIGKILL
    pending, and a start in that moment must not mistake it for the running service."""
    try:
        with open(f"/proc/{pid}/status") as status:
            fields = dict(line.split(":", 1) for line in status.read().splitlines() if ":" in line)
    except (FileNotFoundError, ProcessLookupError):
        return False
    pending = int(fields["SigPnd"], 16) | int(fields["ShdPnd"], 16)
    return fields["State"].split()[0] not in ("Z", "X") and not pending & SIGKILL_BIT


def all_services(run_dir: Path, names: tuple[str, ...] = SERVICES) -> list[ServiceProcess]:
    return [ServiceProcess(name, run_dir) for name in names]
