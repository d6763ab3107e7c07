"""The lint gate: ruff, as configured in pyproject.toml, finds nothing in the code and the tests."""

import subprocess
import sys

from ops.env import ROOT


def test_ruff_finds_nothing():
    command = [sys.executable, "-m", "ruff", "check", "--no-cache", "services", "shared", "ops", "tests"]
    checked = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert checked.returncode == 0, checked.stdout[-3000:] + checked.stderr[-1000:]
