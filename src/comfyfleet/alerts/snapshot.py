"""Read what the rules look at from Redis, once per round, in a handful of round trips.

Bounded on purpose: the oldest queued job per pool is found among the `OLDEST_SCAN`
longest-waiting queued jobs (the `jobs:queued` index is in submit order); a pool whose
oldest job is further back is reported by the first of its jobs within that window.
"""

from __future__ import annotations

from typing import Any

import redis.asyncio as aioredis

from comfyfleet.alerts.rules import RETRIED, Counters, PoolView, Snapshot, restarts_key
from comfyfleet.models.job import DEFAULT_POOL, JobStatus
from comfyfleet.models.node import NodeState
from comfyfleet.store.keys import Keys
from comfyfleet.store.nodes import NodeRegistry
from comfyfleet.store.scripts import guarded, text

OLDEST_SCAN = 200
ENDED_SEP = "\x1f"


class SnapshotReader:
    def __init__(self, redis: aioredis.Redis, keys: Keys, registry: NodeRegistry) -> None:
        self.redis = redis
        self.keys = keys
        self.registry = registry

    @guarded
    async def read(self, now_ms: int, lost_before: frozenset[str] = frozenset()) -> Snapshot:
        nodes = tuple(await self.registry.all())
        pools = await self._pools({p for n in nodes if n.state != NodeState.LOST for p in n.pools})
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.hget(self.keys.stats, "retried")
            pipe.hgetall(self.keys.stats_ended)
            pipe.zcard(self.keys.webhook_due)
            pipe.info("memory")
            retried, ended, webhooks, memory = await pipe.execute()
        values: dict[str, int] = {RETRIED: int(retried or 0)}
        values.update({"ended" + ENDED_SEP + text(k): int(v) for k, v in ended.items()})
        values.update({restarts_key(n.node_id): n.comfy_restarts for n in nodes})
        return Snapshot(
            now_ms=now_ms,
            nodes=nodes,
            pools=pools,
            counters=Counters(now_ms, values),
            webhooks_pending=int(webhooks),
            redis_used_memory=int(memory.get("used_memory", 0)),
            redis_maxmemory=int(memory.get("maxmemory", 0)),
            lost_before=lost_before,
        )

    async def _pools(self, served: set[str]) -> dict[str, PoolView]:
        raw: Any = await self.redis.hgetall(self.keys.depth)
        waiting = {text(pool): int(depth) for pool, depth in raw.items()}
        ordered = sorted({DEFAULT_POOL, *served, *waiting})
        depths = [waiting.get(pool, 0) for pool in ordered]
        oldest = await self._oldest_per_pool()
        return {
            pool: PoolView(int(depth), oldest.get(pool, 0))
            for pool, depth in zip(ordered, depths, strict=True)
        }

    async def _oldest_per_pool(self) -> dict[str, int]:
        index = self.keys.jobs_by_status(JobStatus.QUEUED.value)
        ids: Any = await self.redis.zrange(index, 0, OLDEST_SCAN - 1)
        if not ids:
            return {}
        async with self.redis.pipeline(transaction=False) as pipe:
            for job_id in ids:
                pipe.hmget(self.keys.job(text(job_id)), ["pool", "created_ms", "status"])
            rows = await pipe.execute()
        oldest: dict[str, int] = {}
        for pool, created, status in rows:
            if pool is None or created is None or text(status) != JobStatus.QUEUED.value:
                continue
            oldest.setdefault(text(pool), int(created))
        return oldest
