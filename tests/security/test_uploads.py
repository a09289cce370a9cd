"""Finding 5: uploads filled Redis. 16 uploads of a valid 64x64 PNG header followed by
30 MiB of random bytes were all 201 (Redis grew from 14 to 584 MB for an hour): only the
header was checked, and there was no per-caller quota or total bound."""

from __future__ import annotations

import io
import os
from typing import Any

import aiohttp
import orjson
import pytest
import redis.asyncio as aioredis

from comfyfleet.config import InputStoreConfig, RedisConfig
from comfyfleet.store.inputs import InputQuotaExceeded, InputStore, max_bytes, sniff_image
from comfyfleet.store.keys import Keys
from tests.inputs.samples import png
from tests.security.fleet import Fleet, fleet
from tests.support.waiting import until


async def _upload(f: Fleet, data: bytes, auth: dict[str, str] | None = None) -> tuple[int, Any]:
    form = aiohttp.FormData()
    # A file object: aiohttp warns (an error here) on raw bytes over 1 MiB.
    form.add_field("image", io.BytesIO(data), filename="x.png", content_type="image/png")
    status, headers, body = await f.call("POST", "/api/v1/inputs", data=form,
                                         headers=auth or {})  # fmt: skip
    return status, {**orjson.loads(body), "_retry_after": headers.get("Retry-After")}


async def test_a_png_header_with_30_mib_behind_it_is_refused(
    redis_config: RedisConfig, redis_client: aioredis.Redis
) -> None:
    padded = png(64, 64) + os.urandom(30 * 1024 * 1024)
    async with fleet(redis_config) as f:
        for _ in range(2):
            status, problem = await _upload(f, padded)
            assert status == 422, problem
            assert problem["field"] == "image"
            assert "besides the image" in problem["detail"]
        status, stored = await _upload(f, png(64, 64))
        assert status == 201, stored
    keys = Keys(redis_config.namespace)
    assert await redis_client.hget(keys.input_usage, "*") == str(stored["size"]).encode()


def test_the_bound_leaves_room_for_real_images() -> None:
    info = sniff_image(png(64, 64))
    # 64x64 at 8 bytes a pixel, a byte a row, and a MiB of metadata.
    assert max_bytes(info) == 64 * 64 * 8 + 64 + 1024 * 1024


async def _key(f: Fleet, name: str) -> dict[str, str]:
    status, made = await f.json("POST", "/api/v1/apikeys", json={"name": name})
    assert status == 201
    return {"Authorization": f"Bearer {made['key']}"}


async def test_each_caller_has_a_quota_and_the_store_a_total(redis_config: RedisConfig) -> None:
    size = len(png(32, 32, seed=1))
    bounds = InputStoreConfig(caller_quota_bytes=3 * size + 10, total_bytes=5 * size + 10)
    async with fleet(redis_config, inputs=bounds) as f:
        a, b = await _key(f, "a"), await _key(f, "b")
        for seed in (1, 2, 3):
            assert (await _upload(f, png(32, 32, seed=seed), a))[0] == 201
        status, problem = await _upload(f, png(32, 32, seed=4), a)
        assert (status, problem["code"]) == (429, "input-quota-exceeded")
        assert problem["_retry_after"] == "60"
        # The same bytes again are the same input: answered, not charged twice.
        assert (await _upload(f, png(32, 32, seed=1), a))[0] == 201
        # Another caller is not held back by the first one's quota...
        assert (await _upload(f, png(32, 32, seed=5), b))[0] == 201
        assert (await _upload(f, png(32, 32, seed=6), b))[0] == 201
        # ...but by the store's total.
        status, problem = await _upload(f, png(32, 32, seed=7), b)
        assert (status, problem["code"]) == (429, "input-store-full")


@pytest.fixture
async def redis(redis_config: RedisConfig) -> Any:
    client = aioredis.Redis.from_url(redis_config.url)
    yield client
    await client.aclose()


async def test_expired_uploads_are_refunded_and_held_ones_are_not(
    redis: aioredis.Redis, redis_config: RedisConfig
) -> None:
    keys = Keys(redis_config.namespace)
    size = len(png(16, 16, seed=1))
    inputs = InputStore(redis, keys, ttl_ms=300, hold_ms=60_000, caller_quota_bytes=2 * size)
    kept = await inputs.put(png(16, 16, seed=1), "c")
    gone = await inputs.put(png(16, 16, seed=2), "c")
    with pytest.raises(InputQuotaExceeded):
        await inputs.put(png(16, 16, seed=3), "c")
    assert await inputs.hold([kept.id]) == []  # a job names it: kept for a day
    await until(lambda: inputs.exists([gone.id]), lambda e: e == [False],
                what="the unheld upload to expire")  # fmt: skip
    third = await inputs.put(png(16, 16, seed=3), "c")  # refunded: room for one more
    assert await inputs.exists([kept.id, third.id]) == [True, True]
    with pytest.raises(InputQuotaExceeded):
        await inputs.put(png(16, 16, seed=4), "c")
