"""Locating the project and loading deploy/dev.env as defaults (the real environment always wins)."""

import os

from shared.settings import ROOT, state_dir

__all__ = ["DEV_ENV", "ROOT", "load_dev_env", "state_dir"]

DEV_ENV = ROOT / "deploy" / "dev.env"


def load_dev_env() -> None:
    """In a checkout only: the container image has no deploy/ (there, every setting comes from its environment)."""
    if not DEV_ENV.is_file():
        return
    for line in DEV_ENV.read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#") and "=" in line:
            name, value = line.split("=", 1)
            os.environ.setdefault(name, value)
