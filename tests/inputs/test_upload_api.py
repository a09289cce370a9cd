"""POST /api/v1/inputs on a balancer in this process, and a job naming an upload."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
import redis.asyncio as aioredis

from comfyfleet.balancer import inputs_api
from comfyfleet.config import BlobConfig, RedisConfig
from comfyfleet.store.inputs import HOLD_TTL_MS, INPUT_TTL_MS
from comfyfleet.store.keys import Keys
from tests.inputs.samples import jpeg, png
from tests.live.inprocess import Balancer, balancer


@pytest.fixture
async def bal(redis_config: RedisConfig, blob_config: BlobConfig) -> AsyncIterator[Balancer]:
    """A balancer storing inputs in each blob store in turn (Redis, S3)."""
    async with balancer(redis_config, blobs=blob_config) as b:
        yield b


async def upload(
    bal: Balancer, data: bytes, part: str = "image", name: str = "x.png"
) -> tuple[int, Any]:
    form = aiohttp.FormData()
    form.add_field("note", "ignored")
    form.add_field(part, data, filename=name, content_type="application/octet-stream")
    async with bal.http.post(f"{bal.url}/api/v1/inputs", data=form) as r:
        return r.status, await r.json(content_type=None)


async def test_upload_answers_a_content_derived_name(bal: Balancer) -> None:
    data = png(24, 16)
    status, body = await upload(bal, data, name="../../etc/passwd")
    assert status == 201, body
    assert body["name"] == f"cfin_{body['id']}.png"
    assert (body["content_type"], body["width"], body["height"], body["size"]) == (
        "image/png", 24, 16, len(data))  # fmt: skip
    again_status, again = await upload(bal, data, part="file")
    assert again_status == 201
    assert again["id"] == body["id"]
    status, other = await upload(bal, jpeg())
    assert (status, other["content_type"]) == (201, "image/jpeg")
    assert other["name"].endswith(".jpg")


async def test_bad_uploads_are_clear_problems(
    bal: Balancer, monkeypatch: pytest.MonkeyPatch
) -> None:
    status, body = await upload(bal, b"this is not an image")
    assert (status, body["code"]) == (415, "unsupported-media-type")
    status, body = await upload(bal, png()[:20])
    assert status == 422
    status, body = await upload(bal, png(), part="other")
    assert status == 400
    assert "image" in body["detail"]
    async with bal.http.post(f"{bal.url}/api/v1/inputs", json={"image": "x"}) as r:
        assert r.status == 422  # JSON means a URL to fetch, and this has none
        assert "url" in await r.text()
    # A malformed Content-Disposition beside a good one: aiohttp's parser only warns, and
    # the upload goes through (under -W error that warning was a 500; found by the fuzzer).
    image = png(8, 8)
    raw = (b'--B\r\nContent-Disposition: form-data; name="a"b\r\n\r\nx\r\n'
           b'--B\r\nContent-Disposition: form-data; name="image"; filename*=bad\r\n\r\n'
           + image + b"\r\n--B--\r\n")  # fmt: skip
    headers = {"Content-Type": "multipart/form-data; boundary=B"}
    async with bal.http.post(f"{bal.url}/api/v1/inputs", data=raw, headers=headers) as r:
        assert r.status == 201, await r.text()
        assert (await r.json())["size"] == len(image)
    # Broken multipart framing (found by the fuzzer): a 400 naming it, not a 500.
    for raw in (b"--B\r\nFalse--B--\r\n", b"--B\r\nX: \xf4\x84;\r\n\r\n{}\r\n--B--\r\n", b"junk"):
        headers = {"Content-Type": "multipart/form-data; boundary=B"}
        async with bal.http.post(f"{bal.url}/api/v1/inputs", data=raw, headers=headers) as r:
            assert r.status == 400, raw
            assert "multipart" in await r.text()
    monkeypatch.setattr(inputs_api, "UPLOAD_BODY_LIMIT", 1000)
    status, body = await upload(bal, png(64, 64, seed=3))
    assert (status, body["code"]) == (413, "payload-too-large")


async def test_a_body_declared_too_large_is_refused_before_it_is_read(bal: Balancer) -> None:
    host, port = bal.url.removeprefix("http://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    writer.write(
        b"POST /api/v1/inputs HTTP/1.1\r\nHost: x\r\n"
        b"Content-Type: multipart/form-data; boundary=b\r\n"
        b"Content-Length: 900000000\r\n\r\n"
    )
    await writer.drain()
    status_line = await reader.readline()
    writer.close()
    assert b" 413 " in status_line


async def test_a_job_must_name_a_live_upload_and_holds_it(
    bal: Balancer, redis_config: RedisConfig, redis_client: aioredis.Redis
) -> None:
    status, up = await upload(bal, png(8, 8, seed=11))
    assert status == 201
    key = Keys(redis_config.namespace).input(up["id"])
    assert 0 < await redis_client.pttl(key) <= INPUT_TTL_MS
    body = {"workflow": "invert", "params": {"image": up["name"]}, "pool": "nobody"}
    async with bal.http.post(f"{bal.url}/api/v1/jobs", json=body) as r:
        assert r.status == 202, await r.text()
    assert INPUT_TTL_MS < await redis_client.pttl(key) <= HOLD_TTL_MS
    gone = {"workflow": "invert", "params": {"image": f"cfin_{'0' * 32}.png"}}
    async with bal.http.post(f"{bal.url}/api/v1/jobs", json=gone) as r:
        assert r.status == 422
        problem = await r.json(content_type=None)
    assert problem["input_id"] == "0" * 32
    assert "expired or was never uploaded" in problem["detail"]
