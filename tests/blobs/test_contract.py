"""The blob store contract, passed by both implementations (Redis, and S3 on the suite's
real S3-protocol server): streamed writes visible only when whole, ranges, deletes, caps,
and presigned URLs a plain HTTP client can fetch."""

from __future__ import annotations

import hashlib
import os
from collections.abc import AsyncIterator

import aiohttp
import pytest
import redis.asyncio as aioredis

from comfyfleet.blobs import BlobStore, ByteRange, OutputTooLarge, read_all
from comfyfleet.config import RedisConfig
from comfyfleet.store.keys import Keys

MIB = 1024 * 1024


async def chunked(data: bytes, size: int = 64 * 1024) -> AsyncIterator[bytes]:
    for start in range(0, len(data), size):
        yield data[start : start + size]


class Broke(Exception):
    pass


async def breaks_after(data: bytes) -> AsyncIterator[bytes]:
    async for chunk in chunked(data):
        yield chunk
    raise Broke("the source went away mid-stream")


async def test_a_streamed_blob_reads_back_whole_and_by_range(blobs: BlobStore) -> None:
    data = os.urandom(3 * MIB + 17)
    stored = await blobs.put_stream("outputs/p/j/a1-1/0-x.png", chunked(data),
                                    content_type="image/png", ttl_ms=60_000)  # fmt: skip
    assert (stored.size, stored.sha256) == (len(data), hashlib.sha256(data).hexdigest())
    assert stored.content_type == "image/png"
    assert await blobs.size(stored.key) == len(data)
    assert await read_all(blobs, stored.key) == data
    middle = b"".join([c async for c in blobs.read(stored.key, ByteRange(MIB - 3, 2 * MIB + 4))])
    assert middle == data[MIB - 3 : 2 * MIB + 5]
    tail = b"".join(
        [c async for c in blobs.read(stored.key, ByteRange(len(data) - 5, len(data) - 1))]
    )
    assert tail == data[-5:]


@pytest.mark.parametrize("size", [1, MIB - 1, MIB, MIB + 1, 2 * MIB])
async def test_blobs_around_the_chunk_size_read_back_whole(blobs: BlobStore, size: int) -> None:
    data = os.urandom(size)
    stored = await blobs.put_stream(f"outputs/p/j/a1-1/{size}.png", chunked(data, MIB // 2),
                                    content_type="image/png")  # fmt: skip
    assert await blobs.size(stored.key) == size
    assert await read_all(blobs, stored.key) == data


async def test_deleted_and_unknown_blobs_read_as_gone(blobs: BlobStore) -> None:
    stored = await blobs.put_stream("inputs/abc", chunked(b"hello"), content_type="image/png")
    await blobs.delete([stored.key, "inputs/never-written"])
    assert await blobs.size(stored.key) is None
    assert await read_all(blobs, stored.key) is None
    assert [c async for c in blobs.read("inputs/never-written")] == []


async def test_an_empty_blob_is_a_blob(blobs: BlobStore) -> None:
    stored = await blobs.put_stream("inputs/empty", chunked(b""), content_type="text/plain")
    assert stored.size == 0
    assert await blobs.size("inputs/empty") == 0


async def test_a_stream_that_breaks_leaves_nothing_visible(
    blobs: BlobStore, redis_config: RedisConfig
) -> None:
    # 12 MiB: past the first S3 part, so a multipart upload was under way when it broke.
    with pytest.raises(Broke):
        await blobs.put_stream("outputs/p/j/a1-1/0-big.png", breaks_after(os.urandom(12 * MIB)),
                               content_type="image/png")  # fmt: skip
    assert await blobs.size("outputs/p/j/a1-1/0-big.png") is None
    assert [u async for u in blobs.list_uploads("")] == []  # aborted, not left behind
    redis = aioredis.Redis.from_url(redis_config.url)
    parts = [k async for k in redis.scan_iter(match=Keys(redis_config.namespace).blob_part("*"))]
    await redis.aclose()
    assert parts == []


async def test_a_blob_past_the_cap_is_refused_and_not_stored(blobs: BlobStore) -> None:
    with pytest.raises(OutputTooLarge, match="cap of 10 bytes"):
        await blobs.put_stream("outputs/p/j/a1-1/0-x", chunked(b"x" * 11, 4),
                               content_type="image/png", max_bytes=10)  # fmt: skip
    assert await blobs.size("outputs/p/j/a1-1/0-x") is None
    stored = await blobs.put_stream("outputs/p/j/a1-1/1-x", chunked(b"x" * 10, 4),
                                    content_type="image/png", max_bytes=10)  # fmt: skip
    assert stored.size == 10


async def test_presigned_urls_are_fetched_by_plain_http(blobs: BlobStore) -> None:
    data = os.urandom(200_000)
    stored = await blobs.put_stream("outputs/p/j/a1-1/0-cat.png", chunked(data),
                                    content_type="image/png")  # fmt: skip
    url = await blobs.presign(stored.key, filename="cat.png", expires_s=60)
    if blobs.kind == "redis":
        assert url is None  # Redis blobs are only served through the balancer
        return
    # SigV4 query signing, expiring as asked (moto does not check signatures; S3 does).
    assert url is not None
    assert "X-Amz-Signature=" in url
    assert "X-Amz-Expires=60" in url
    async with aiohttp.ClientSession() as http:  # no credentials of any kind
        async with http.get(url) as resp:
            assert resp.status == 200
            assert await resp.read() == data
            assert resp.headers["Content-Disposition"] == 'inline; filename="cat.png"'
        async with http.get(url, headers={"Range": "bytes=10-19"}) as resp:
            assert resp.status == 206
            assert await resp.read() == data[10:20]


async def test_redis_blobs_carry_their_ttl(blobs: BlobStore, redis_config: RedisConfig) -> None:
    if blobs.kind != "redis":
        pytest.skip("S3 objects have no TTL of their own: the sweeper's tests cover them")
    await blobs.put_stream("outputs/p/j/a1-1/0-x", chunked(b"abc"), content_type="image/png",
                           ttl_ms=60_000)  # fmt: skip
    await blobs.put_stream("outputs/p/j/a1-1/1-x", chunked(b"abc"), content_type="image/png")
    redis = aioredis.Redis.from_url(redis_config.url)
    ttl = await redis.pttl(Keys(redis_config.namespace).blob("outputs/p/j/a1-1/0-x"))
    kept = await redis.pttl(Keys(redis_config.namespace).blob("outputs/p/j/a1-1/1-x"))
    await redis.aclose()
    assert 0 < ttl <= 60_000
    assert kept == -1  # no TTL asked: none
