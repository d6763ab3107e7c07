"""Locating the project and loading deploy/dev.env as defaults (the real environment always wins)."""

import os
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DEV_ENV = ROOT / "deploy" / "dev.env"


def state_dir() -> Path:
    return Path(os.environ.get("OMS_STATE_DIR", ROOT / ".oms"))


def load_dev_env() -> None:
    for line in DEV_ENV.read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#") and "=" in line:
            name, value = line.split("=", 1)
            os.environ.setdefault(name, value)
