"""The Redis blob store: bytes beside the state, for `up` and small fleets.

A blob is one STRING `{ns}:blob:<key>`. It is written by APPENDs to a temporary
`{ns}:blob-part:<token>` (which expires on its own if the writer dies) and renamed into
place with its TTL in one script, so a reader never sees half a blob. A blob that fits in
one chunk is written by one SET with its TTL instead (as atomic, two round trips fewer).
Ranges are GETRANGE.
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import AsyncGenerator, AsyncIterable, AsyncIterator, Iterable

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from comfyfleet.blobs.base import ByteRange, ListedBlob, StoredBlob, Tally
from comfyfleet.errors import StoreError
from comfyfleet.store.keys import Keys
from comfyfleet.store.scripts import guarded

DEFAULT_MAX_BYTES = 64 * 1024 * 1024
# Bytes gathered before one APPEND, and read per GETRANGE.
CHUNK_BYTES = 1024 * 1024
# A half-written blob outlives its writer by this much (ms).
PART_TTL_MS = 10 * 60 * 1000

# KEYS[1]: the part being written, KEYS[2]: the blob. ARGV[1]: TTL (ms, 0: none).
# Rename and set the TTL in one step: a crash in between would leave a blob without a TTL.
_SEAL_LUA = """
redis.call('RENAME', KEYS[1], KEYS[2])
if tonumber(ARGV[1]) > 0 then
  redis.call('PEXPIRE', KEYS[2], ARGV[1])
else
  redis.call('PERSIST', KEYS[2])
end
return 1
"""


class RedisBlobStore:
    kind = "redis"

    def __init__(
        self, redis: aioredis.Redis, keys: Keys, *, max_bytes: int = DEFAULT_MAX_BYTES
    ) -> None:
        self.redis = redis
        self.keys = keys
        self.max_bytes = max_bytes
        self._seal = redis.register_script(_SEAL_LUA)

    @guarded
    async def put_stream(
        self, key: str, chunks: AsyncIterable[bytes], *, content_type: str,
        ttl_ms: int | None = None, max_bytes: int | None = None,
    ) -> StoredBlob:  # fmt: skip
        tally = Tally(key, max_bytes or self.max_bytes)
        part = self.keys.blob_part(uuid.uuid4().hex)
        pending = bytearray()
        appended = False
        try:
            async for chunk in chunks:
                tally.add(chunk)
                pending += chunk
                if len(pending) >= CHUNK_BYTES:
                    await self._append(part, pending)
                    pending.clear()
                    appended = True
            if not appended:
                await self.redis.set(self.keys.blob(key), bytes(pending), px=ttl_ms or None)
                return tally.stored(content_type)
            await self._append(part, pending)
            await self._seal(keys=[part, self.keys.blob(key)], args=[ttl_ms or 0])
        except BaseException:
            await self._discard(part)
            raise
        return tally.stored(content_type)

    async def _append(self, part: str, data: bytearray) -> None:
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.append(part, bytes(data))  # an empty APPEND still creates the part
            pipe.pexpire(part, PART_TTL_MS)
            await pipe.execute()

    async def _discard(self, part: str) -> None:
        with contextlib.suppress(RedisError):  # else it expires on its own (PART_TTL_MS)
            await self.redis.delete(part)

    @guarded
    async def size(self, key: str) -> int | None:
        blob = self.keys.blob(key)
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.exists(blob)
            pipe.strlen(blob)
            exists, length = await pipe.execute()
        return int(length) if exists else None

    async def read(
        self, key: str, byte_range: ByteRange | None = None
    ) -> AsyncGenerator[bytes, None]:
        blob = self.keys.blob(key)
        # Without a range: chunk after chunk until a short one, no STRLEN first (a small
        # blob is then one round trip).
        end = byte_range.end if byte_range else None
        position = byte_range.start if byte_range else 0
        try:
            while end is None or position <= end:
                last = (
                    position + CHUNK_BYTES - 1
                    if end is None
                    else min(end, position + CHUNK_BYTES - 1)
                )
                chunk = await self.redis.getrange(blob, position, last)
                if not chunk:
                    return  # gone (expired) meanwhile, or the blob's end
                yield chunk.encode() if isinstance(chunk, str) else chunk
                if len(chunk) < last - position + 1:
                    return
                position = last + 1
        except RedisError as exc:
            raise StoreError(f"redis: {exc}") from exc

    @guarded
    async def delete(self, keys: Iterable[str]) -> None:
        names = [self.keys.blob(k) for k in keys]
        if names:
            await self.redis.delete(*names)

    async def presign(self, key: str, *, filename: str, expires_s: int) -> str | None:
        return None

    async def list_blobs(self, prefix: str) -> AsyncIterator[ListedBlob]:
        # Redis blobs expire by their TTL: nothing for a sweeper to find.
        return
        yield

    async def list_uploads(self, prefix: str) -> AsyncIterator[ListedBlob]:
        return  # half-written blobs expire by PART_TTL_MS
        yield

    async def abort_upload(self, key: str, upload_id: str) -> None:
        return None

    async def close(self) -> None:
        return None  # the Redis client belongs to the role
