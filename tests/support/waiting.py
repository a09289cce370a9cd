"""Waiting on a condition with a deadline: the suite's only way to wait for the system."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

T = TypeVar("T")

POLL_S = 0.05


async def until(
    probe: Callable[[], Awaitable[T]],
    accept: Callable[[T], bool],
    *,
    timeout_s: float = 30.0,
    what: str = "condition",
) -> T:
    """Call `probe` until `accept(result)`; AssertionError with the last result at the deadline."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = await probe()
        if accept(value):
            return value
        if time.monotonic() > deadline:
            raise AssertionError(
                f"timed out after {timeout_s}s waiting for {what}; last: {value!r}"
            )
        await asyncio.sleep(POLL_S)
