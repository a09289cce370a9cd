"""Background tasks: stopping them so that they really stop, and pacing their retries.

A cancel can be lost on Python 3.11: `asyncio.wait_for` returns the awaited result instead
of raising when the cancel lands in the same loop step as that result (python/cpython#86296,
fixed in 3.12), and redis-py wraps every socket write in `wait_for`. A task that loses its
cancel that way carries on, and `await task` then waits forever. So `stop` repeats the
cancel until each task has ended.
"""

from __future__ import annotations

import asyncio

import structlog

log = structlog.get_logger(__name__)

RECANCEL_S = 0.5  # how long a cancelled task may take to end before it is cancelled again


async def stop(*tasks: asyncio.Task[object] | None, report: bool = True) -> None:
    """Cancel `tasks` (None entries are skipped) and return once all have ended.

    Unlike `suppress(CancelledError): await task`, a cancel of the caller itself still
    propagates. A task that had failed is logged, so its error is not lost -- unless not
    `report`, for helpers whose failure the caller has already dealt with."""
    mine = [t for t in tasks if t is not None]
    for task in mine:
        task.cancel()
    pending = {t for t in mine if not t.done()}
    while pending:
        _, pending = await asyncio.wait(pending, timeout=RECANCEL_S)
        for task in pending:
            task.cancel()
    for task in mine:
        if not task.cancelled() and (error := task.exception()) is not None and report:
            log.warning("task_failed", task=task.get_name(), error=repr(error))


class Doubling:
    """The wait between tries of something that keeps failing (e.g. Redis is down): `first`
    seconds, doubled after each failure up to `cap`; back to `first` after a success."""

    def __init__(self, first: float, cap: float) -> None:
        self.first, self.cap = first, cap
        self.delay = first

    def reset(self) -> None:
        self.delay = self.first

    async def sleep(self) -> None:
        """Wait the current delay (say it in logs before calling), then double it."""
        await asyncio.sleep(self.delay)
        self.delay = min(self.delay * 2, self.cap)
