"""ComfyUI's log lines of each attempt of a job: written by the node that ran the attempt,
read by the balancer's `GET /api/v1/jobs/{id}/logs`.

One LIST per attempt (`{ns}:joblog:<job>:<n>`), each item one line as JSON
(`{"n", "t", "level", "text", "stream", "prompt_id", "comfy_t"?}`), bounded to the last
`MAX_LINES` lines and `MAX_BYTES` bytes. The node holding the attempt's lease is its only
writer, so the byte bound is kept by the writer's running count of what it pushed (no
read-modify-write in Redis); an adopted attempt (node restarted) starts a fresh count, so
its list may briefly exceed the byte bound by what the previous life wrote. Every append
also sets the retention TTL of the job (a job expires its retention after it ends; its last
lines come at most seconds before that), so logs go with their job.

When an attempt ends its job, the script that ends it moves the attempt's list into the job
hash if it is short (FOLDED_JOBLOG, fold_joblog in lua/_lib.lua): a key of its own costs
more than a line or two. Lines written after that join them while they fit
(lua/joblog_append.lua), and go to a new list beyond; `read` shows the moved lines first,
then the list's.
"""

from __future__ import annotations

from collections import OrderedDict, deque
from dataclasses import dataclass
from typing import Any

import orjson
import redis.asyncio as aioredis

from comfyfleet.models.job import FOLDED_JOBLOG, FOLDED_JOBLOG_MAX
from comfyfleet.store.jobs import DEFAULT_RETENTION_MS
from comfyfleet.store.keys import Keys
from comfyfleet.store.scripts import Script, guarded, standalone, text

MAX_LINES = 200
MAX_BYTES = 64 * 1024
# Attempts whose pushed sizes a writer remembers (one node runs a handful at a time).
TRACKED_ATTEMPTS = 256


@dataclass(frozen=True)
class AppendArgs:
    attempt: int
    field: str  # the job hash field of the attempt's moved log
    lines: list[str]  # JSON texts
    keep: int  # how many of the list's last items to keep
    retention_ms: int
    max_folded: int  # bytes the moved log may take


class _Tail:
    """Sizes (bytes) of the lines an attempt's list holds, oldest first."""

    def __init__(self) -> None:
        self.sizes: deque[int] = deque()
        self.total = 0

    def push(self, size: int) -> None:
        self.sizes.append(size)
        self.total += size
        while len(self.sizes) > MAX_LINES or (self.total > MAX_BYTES and len(self.sizes) > 1):
            self.total -= self.sizes.popleft()


class JobLogStore:
    """Every method raises StoreError when Redis cannot be reached."""

    def __init__(
        self, redis: aioredis.Redis, keys: Keys, *, retention_ms: int = DEFAULT_RETENTION_MS
    ) -> None:
        self.redis = redis
        self.keys = keys
        self.retention_ms = retention_ms
        self._tails: OrderedDict[tuple[str, int], _Tail] = OrderedDict()
        self._append: Script[AppendArgs] = standalone(redis, "joblog_append")

    def _tail(self, job_id: str, attempt: int) -> _Tail:
        key = (job_id, attempt)
        tail = self._tails.pop(key, None) or _Tail()
        self._tails[key] = tail
        while len(self._tails) > TRACKED_ATTEMPTS:
            self._tails.popitem(last=False)
        return tail

    @guarded
    async def append(self, job_id: str, attempt: int, lines: list[dict[str, Any]]) -> None:
        """Append lines to the attempt's list and trim it to the bounds (one round trip)."""
        if not lines:
            return
        encoded = [orjson.dumps(line).decode() for line in lines]
        tail = self._tail(job_id, attempt)
        for item in encoded:
            tail.push(len(item))
        keys = [self.keys.job(job_id), self.keys.job_log(job_id, attempt)]
        args = AppendArgs(attempt, f"{FOLDED_JOBLOG}{attempt}", encoded, len(tail.sizes),
                          self.retention_ms, FOLDED_JOBLOG_MAX)  # fmt: skip
        await self._append(keys, args)

    @guarded
    async def read(self, job_id: str, attempts: int) -> dict[int, list[dict[str, Any]]]:
        """The lines of attempts 1..`attempts`, oldest first (an attempt without lines, or
        whose lines expired, maps to [])."""
        numbers = list(range(1, attempts + 1))
        if not numbers:
            return {}
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.hmget(self.keys.job(job_id), [f"{FOLDED_JOBLOG}{n}" for n in numbers])
            for n in numbers:
                pipe.lrange(self.keys.job_log(job_id, n), 0, -1)
            folded, *replies = await pipe.execute()
        out: dict[int, list[dict[str, Any]]] = {}
        for n, moved, items in zip(numbers, folded, replies, strict=True):
            lines = text(moved).split("\n") if moved else []
            out[n] = [orjson.loads(line) for line in [*lines, *items]]
        return out
