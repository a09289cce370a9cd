"""The one clock seam. Everything that stamps or compares times calls these, so tests can
freeze or step time by replacing `Clock` (see `frozen_clock` in tests)."""

from __future__ import annotations

import time


class Clock:
    """Wall clock in milliseconds since the epoch, and a monotonic clock in seconds."""

    def now_ms(self) -> int:
        return time.time_ns() // 1_000_000

    def monotonic(self) -> float:
        return time.monotonic()


class FrozenClock(Clock):
    """A clock that moves only when told to: for tests that step the system."""

    def __init__(self, start_ms: int = 1_700_000_000_000) -> None:
        self._ms = start_ms

    def now_ms(self) -> int:
        return self._ms

    def monotonic(self) -> float:
        return self._ms / 1000.0

    def advance(self, ms: int) -> None:
        self._ms += ms


SYSTEM_CLOCK = Clock()
