"""Waiting for a condition with a deadline (the operator tools' counterpart of the tests' `eventually`)."""

import asyncio
import inspect
import time
from collections.abc import Callable


async def wait_until(condition: Callable, *, timeout: float, what: str, interval: float = 0.05) -> None:
    deadline = time.monotonic() + timeout
    while True:
        met = condition()
        if inspect.isawaitable(met):
            met = await met
        if met:
            return
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout:.0f}s waiting for {what}")
        await asyncio.sleep(interval)
