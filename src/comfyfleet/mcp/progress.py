"""Job events as MCP progress notifications. Pure.

MCP asks that `progress` grows with every notification. A job's own numbers do not: the
queue position falls, and each sampler's step counter starts again at 1. So progress here
counts milestones: one per place the job moves up the queue, one for starting, one per
step of every sampler, and `total` is known only while a sampler runs (what is done so far
plus the steps that sampler has left). The message says it in words: "queued: position 3",
"step 7 of 20".
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Progress:
    progress: float
    total: float | None
    message: str


class ProgressMeter:
    """Feed it a job's events in order; it answers a notification when there is news."""

    def __init__(self) -> None:
        self.done = 0  # milestones so far
        self._position: int | None = None
        self._started = False
        self._step = 0
        self._steps = 0
        self._sent = False

    def feed(self, kind: str, data: dict[str, Any]) -> Progress | None:
        """The notification `kind`/`data` (an SSE event of the job) calls for, if any."""
        if kind == "position":
            return self._queued(data.get("queue_position"))
        if kind == "state" and data.get("status") == "running" and not self._started:
            self._started = True
            self.done += 1
            node = data.get("node_id")
            return self._emit(None, f"running on {node}" if node else "running")
        if kind == "progress":
            return self._stepped(data.get("value"), data.get("max"))
        return None

    def _queued(self, position: Any) -> Progress | None:
        if not isinstance(position, int) or self._started:
            return None
        if self._position is not None:
            if position >= self._position:
                return None
            self.done += self._position - position
        self._position = position
        return self._emit(None, f"queued: position {position + 1}")

    def _stepped(self, value: Any, steps: Any) -> Progress | None:
        if not isinstance(value, int) or not isinstance(steps, int) or steps <= 0:
            return None
        if value < self._step or steps != self._steps:  # another sampler started
            self._step, self._steps = 0, steps
        if value <= self._step:
            return None
        self.done += value - self._step
        self._step = value
        return self._emit(self.done + steps - value, f"step {value} of {steps}")

    def _emit(self, total: int | None, message: str) -> Progress | None:
        # The first notification may say 0; every later one has moved on.
        if self._sent and self.done == 0:
            return None
        self._sent = True
        return Progress(float(self.done), None if total is None else float(total), message)
