"""Waiting for something that happens in its own time (a pub/sub message, a watchdog's tick, a
worker starting): poll a condition until it holds, within a deadline, never a fixed sleep."""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Awaitable, Callable


async def eventually(
    condition: Callable[[], bool | Awaitable[bool]],
    timeout: float = 10.0,
    *,
    what: str | None = None,
    interval: float = 0.02,
) -> None:
    """Call `condition` (sync or async) every `interval` seconds until it returns true; an
    AssertionError saying `what` was awaited if `timeout` seconds pass first. An exception from
    the condition ends the wait at once."""
    deadline = time.monotonic() + timeout
    while True:
        outcome = condition()
        if inspect.isawaitable(outcome):
            outcome = await outcome
        if outcome:
            return
        if time.monotonic() >= deadline:
            described = what or getattr(condition, "__qualname__", repr(condition))
            raise AssertionError(f"not true after {timeout:g} s: {described}")
        await asyncio.sleep(interval)
