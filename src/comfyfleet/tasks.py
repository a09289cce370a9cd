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

from comfyfleet.models.retry import Backoff

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


class Pacer:
    """Paces a loop that retries something that keeps failing (e.g. Redis is down): waits
    `backoff.delay_ms(n)` after the n-th failure in a row; back to the first delay after
    a success (`reset`)."""

    def __init__(self, backoff: Backoff) -> None:
        self.backoff = backoff
        self.failures = 0
        self._next_s: float | None = None  # drawn once, so a jittered wait is the one logged

    @property
    def delay_s(self) -> float:
        """The wait the next `sleep` takes (s): say it in logs before calling."""
        if self._next_s is None:
            self._next_s = self.backoff.delay_ms(self.failures + 1) / 1000
        return self._next_s

    def reset(self) -> None:
        self.failures, self._next_s = 0, None

    async def sleep(self) -> None:
        """Wait the current delay and count the failure (the next wait is longer)."""
        delay = self.delay_s
        self.failures, self._next_s = self.failures + 1, None
        await asyncio.sleep(delay)
