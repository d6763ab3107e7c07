"""Waiting for a condition with a deadline instead of sleeping (operator tools and tests alike)."""

import asyncio
import inspect
import time
from collections.abc import Callable
from typing import Any


async def eventually(probe: Callable[[], Any], *, timeout: float = 30.0, interval: float = 0.1,
                     what: str = "condition") -> Any:
    """Call probe (plain or async) until it returns something truthy, and return that; when the deadline
    passes, fail with the last value it returned."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = probe()
        if inspect.isawaitable(last):
            last = await last
        if last:
            return last
        await asyncio.sleep(interval)
    raise TimeoutError(f"timed out after {timeout}s waiting for {what}; last value: {last!r}")
