"""What a principal removed from its ComfyUI `/history` (POST /history `delete`/`clear`).

On one ComfyUI, history is an in-memory cache of ended prompts that a client may prune. On
the fleet an ended prompt is a job, kept for the fleet's retention and still served by
`/api/v1/jobs`; pruning ComfyUI's history must not destroy that record (another client,
a webhook or the admin may still need it). So a delete or clear hides prompts from that
principal's native history only: one hash per owner holds the deleted ids and the time of
its last clear, expiring with the jobs it talks about.
"""

from __future__ import annotations

from collections.abc import Iterable

import redis.asyncio as aioredis

from comfyfleet.models.job import Job
from comfyfleet.store.keys import Keys
from comfyfleet.store.scripts import guarded

CLEARED = "cleared_ms"


class HistoryVeil:
    def __init__(self, redis: aioredis.Redis, keys: Keys, retention_ms: int) -> None:
        self.redis = redis
        self.keys = keys
        self.retention_ms = retention_ms

    @guarded
    async def hide(self, owner: str, job_ids: Iterable[str]) -> None:
        ids = list(job_ids)
        if not ids:
            return
        key = self.keys.comfy_history_hidden(owner)
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.hset(key, mapping=dict.fromkeys(ids, "1"))
            pipe.pexpire(key, self.retention_ms)
            await pipe.execute()

    @guarded
    async def clear(self, owner: str, now_ms: int) -> None:
        """Hide every prompt of `owner` that ended by `now_ms` (the jobs' own clock)."""
        key = self.keys.comfy_history_hidden(owner)
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.delete(key)  # the ids are covered by the clear
            pipe.hset(key, CLEARED, str(now_ms))
            pipe.pexpire(key, self.retention_ms)
            await pipe.execute()

    @guarded
    async def visible(self, owner: str, jobs: list[Job]) -> list[Job]:
        """`jobs` less those `owner` deleted or cleared from its history."""
        if not jobs:
            return jobs
        key = self.keys.comfy_history_hidden(owner)
        values = await self.redis.hmget(key, [CLEARED, *(job.id for job in jobs)])
        cleared = int(values[0]) if values[0] else None
        return [
            job
            for job, hidden in zip(jobs, values[1:], strict=True)
            if hidden is None and not (cleared is not None and (job.finished_ms or 0) <= cleared)
        ]
