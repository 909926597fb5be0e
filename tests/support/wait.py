"""Waiting for a condition with a deadline instead of sleeping a fixed time: fast when the machine is fast,
and still correct (only slower) when a loaded CI machine is slow."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable


def wait_until(predicate: Callable[[], object], timeout: float = 10.0, what: str = "condition",
               interval: float = 0.05) -> None:
    """Poll ``predicate`` until it is true; an AssertionError naming ``what`` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(interval)


async def async_wait_until(predicate: Callable[[], object | Awaitable[object]], timeout: float = 10.0,
                           what: str = "condition", interval: float = 0.05) -> None:
    """``wait_until`` for async tests: ``predicate`` may be a coroutine function; the loop keeps running."""
    deadline = time.monotonic() + timeout
    while True:
        result = predicate()
        if asyncio.iscoroutine(result):
            result = await result
        if result:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        await asyncio.sleep(interval)
