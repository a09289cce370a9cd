"""The latest preview image of each running job: written by its node, read by the balancer.

Only the newest preview is kept (one HASH per job, a short TTL): previews are a live view,
not a record. The job's event log gets a `preview` event per stored preview (see
node/previews.py) whose `n` counts them, so a client can tell a new one from an old one.
"""

from __future__ import annotations

from dataclasses import dataclass

import redis.asyncio as aioredis

from comfyfleet.store.keys import Keys
from comfyfleet.store.scripts import guarded, text

# A preview outlives its job's run by a little, then goes (ms).
PREVIEW_TTL_MS = 10 * 60 * 1000


@dataclass(frozen=True)
class Preview:
    """One preview: its bytes, type and number (1 for the job's first)."""

    data: bytes
    content_type: str
    n: int


class PreviewStore:
    def __init__(self, redis: aioredis.Redis, keys: Keys, *, ttl_ms: int = PREVIEW_TTL_MS) -> None:
        self.redis = redis
        self.keys = keys
        self.ttl_ms = ttl_ms

    @guarded
    async def put(self, job_id: str, preview: Preview) -> None:
        key = self.keys.preview(job_id)
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.hset(key, mapping={"data": preview.data, "content_type": preview.content_type,
                                    "n": preview.n})  # fmt: skip
            pipe.pexpire(key, self.ttl_ms)
            await pipe.execute()

    @guarded
    async def get(self, job_id: str) -> Preview | None:
        data, content_type, n = await self.redis.hmget(
            self.keys.preview(job_id), ["data", "content_type", "n"]
        )
        if data is None or content_type is None or n is None:
            return None
        blob = data.encode() if isinstance(data, str) else data
        return Preview(blob, text(content_type), int(n))
