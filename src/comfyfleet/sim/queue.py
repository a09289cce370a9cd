"""The prompt queue, job numbering and history, with ComfyUI's PromptQueue semantics.

The pending queue is a binary heap on (number, prompt_id): `/queue` shows it in heap-array
order, not sorted, exactly as ComfyUI does. History is in memory and capped.
"""

from __future__ import annotations

import asyncio
import copy
import heapq
import itertools
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

MAX_HISTORY = 10000
# Stripped from extra_data before a job goes into history (ComfyUI's SENSITIVE_EXTRA_DATA_KEYS).
SENSITIVE_EXTRA_DATA_KEYS = ("auth_token_comfy_org", "api_key_comfy_org")


@dataclass
class Job:
    number: float
    prompt_id: str
    prompt: dict[str, Any]
    extra_data: dict[str, Any]
    outputs: list[str]

    @property
    def client_id(self) -> str | None:
        client = self.extra_data.get("client_id")
        return client if isinstance(client, str) else None

    def item(self) -> list[Any]:
        """The queue item as ComfyUI serialises it: [number, id, prompt, extra, outputs]."""
        return [self.number, self.prompt_id, self.prompt, self.extra_data, self.outputs]


class PromptQueue:
    """Pending heap, running jobs, history and the process-wide `number` counter.

    `on_change` is called whenever the number of remaining tasks may have changed, so the
    server can broadcast a `status` message (ComfyUI's queue_updated).
    """

    def __init__(self, on_change: Callable[[], None], max_history: int = MAX_HISTORY) -> None:
        self._on_change = on_change
        self._max_history = max_history
        self._heap: list[tuple[float, str, int, Job]] = []
        self._seq = itertools.count()
        self._task_ids = itertools.count()
        self.running: dict[int, Job] = {}
        self.history: dict[str, dict[str, Any]] = {}
        self.counter = 0
        self.flags: dict[str, Any] = {}
        self._wake = asyncio.Event()

    def next_number(self, front: bool) -> int:
        """The next counter value (negated for `front`), advancing the counter."""
        number = -self.counter if front else self.counter
        self.counter += 1
        return number

    def put(self, job: Job) -> None:
        heapq.heappush(self._heap, (job.number, job.prompt_id, next(self._seq), job))
        self._on_change()
        self._wake.set()

    async def get(self) -> tuple[int, Job] | None:
        """The lowest-numbered job, now marked running; None when woken for flags only."""
        while not self._heap:
            self._wake.clear()
            if self.flags:
                return None
            await self._wake.wait()
        job = heapq.heappop(self._heap)[3]
        task_id = next(self._task_ids)
        self.running[task_id] = Job(
            job.number, job.prompt_id, job.prompt, copy.deepcopy(job.extra_data), job.outputs
        )
        self._on_change()
        return task_id, self.running[task_id]

    def task_done(self, task_id: int, result: dict[str, Any], status: dict[str, Any]) -> None:
        job = self.running.pop(task_id)
        if len(self.history) > self._max_history:
            self.history.pop(next(iter(self.history)))
        for key in SENSITIVE_EXTRA_DATA_KEYS:
            job.extra_data.pop(key, None)
        self.history[job.prompt_id] = {"prompt": job.item(), "outputs": {}, "status": status}
        self.history[job.prompt_id].update(result)
        self._on_change()

    def remaining(self) -> int:
        return len(self._heap) + len(self.running)

    def snapshot(self) -> tuple[list[Any], list[Any]]:
        """(running items, pending items in heap-array order)."""
        running = [job.item() for job in self.running.values()]
        return running, [entry[3].item() for entry in self._heap]

    def pending_ids(self) -> list[str]:
        return [entry[1] for entry in self._heap]

    def wipe(self) -> None:
        self._heap = []
        self._on_change()

    def delete(self, prompt_id: str) -> bool:
        """Remove the first pending job with this id (running jobs are untouched)."""
        for index, entry in enumerate(self._heap):
            if entry[1] != prompt_id:
                continue
            if len(self._heap) == 1:
                self.wipe()
            else:
                self._heap.pop(index)
                heapq.heapify(self._heap)
            self._on_change()
            return True
        return False

    def get_history(
        self, prompt_id: str | None = None, max_items: int | None = None, offset: int = -1
    ) -> dict[str, Any]:
        if prompt_id is not None:
            entry = self.history.get(prompt_id)
            return {} if entry is None else {prompt_id: copy.deepcopy(entry)}
        if offset < 0 and max_items is not None:
            offset = len(self.history) - max_items
        out: dict[str, Any] = {}
        for index, (key, entry) in enumerate(self.history.items()):
            if index >= offset:
                out[key] = entry
                if max_items is not None and len(out) >= max_items:
                    break
        return out

    def set_flag(self, name: str, value: Any) -> None:
        self.flags[name] = value
        self._wake.set()

    def take_flags(self) -> dict[str, Any]:
        flags, self.flags = self.flags, {}
        return flags
