"""Where output bytes live between a node producing them and a client fetching them.

`ResultStore` is the interface; `RedisResultStore` keeps each output as one string key with
a TTL and a per-output size cap. Other backends (S3, a shared disk) can implement the same
three methods.
"""

from __future__ import annotations

from typing import Protocol

import redis.asyncio as aioredis

from comfyfleet.errors import ComfyfleetError
from comfyfleet.store.keys import Keys
from comfyfleet.store.scripts import guarded

DEFAULT_RESULT_TTL_MS = 24 * 3600 * 1000
DEFAULT_MAX_OUTPUT_BYTES = 64 * 1024 * 1024


class OutputTooLarge(ComfyfleetError):
    status = 507
    code = "output-too-large"
    title = "Output exceeds the result store's size cap"


class ResultStore(Protocol):
    async def put(self, job_id: str, index: int, data: bytes) -> None: ...

    async def get(self, job_id: str, index: int) -> bytes | None: ...

    async def delete(self, job_id: str, count: int) -> None: ...


class RedisResultStore:
    def __init__(
        self,
        redis: aioredis.Redis,
        keys: Keys,
        *,
        ttl_ms: int = DEFAULT_RESULT_TTL_MS,
        max_bytes: int = DEFAULT_MAX_OUTPUT_BYTES,
    ) -> None:
        self.redis = redis
        self.keys = keys
        self.ttl_ms = ttl_ms
        self.max_bytes = max_bytes

    @guarded
    async def put(self, job_id: str, index: int, data: bytes) -> None:
        if len(data) > self.max_bytes:
            raise OutputTooLarge(
                f"output {index} of job {job_id} is {len(data)} bytes; the cap is {self.max_bytes}"
            )
        await self.redis.set(self.keys.result(job_id, index), data, px=self.ttl_ms)

    @guarded
    async def get(self, job_id: str, index: int) -> bytes | None:
        data = await self.redis.get(self.keys.result(job_id, index))
        return data.encode() if isinstance(data, str) else data

    @guarded
    async def delete(self, job_id: str, count: int) -> None:
        if count:
            await self.redis.delete(*(self.keys.result(job_id, i) for i in range(count)))
