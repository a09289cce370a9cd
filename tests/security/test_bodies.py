"""Finding 1: a valid large job was refused (the body was read only in part)."""

from __future__ import annotations

import io

import orjson

from comfyfleet.config import RedisConfig
from comfyfleet.web.responses import JSON_BODY_LIMIT
from tests.security.fleet import fleet
from tests.security.graphs import sized


async def test_a_960_kb_job_is_read_whole(redis_config: RedisConfig) -> None:
    body = orjson.dumps({"graph": sized(960_000)})
    assert 950_000 < len(body) < JSON_BODY_LIMIT
    async with fleet(redis_config) as f:
        for _ in range(3):  # it failed on every try, at one chunk boundary or another
            status, job = await f.json("POST", "/api/v1/jobs", data=body,
                                       headers={"Content-Type": "application/json"})  # fmt: skip
            assert status == 202, job


async def test_a_1_9_mib_job_is_accepted_and_runs(redis_config: RedisConfig) -> None:
    body = orjson.dumps({"graph": sized(int(1.9 * 1024 * 1024))})
    assert len(body) > 1.89 * 1024 * 1024
    async with fleet(redis_config, node=True) as f:
        # aiohttp warns (as an error here) on raw bytes over 1 MiB: hand it a file object.
        status, job = await f.json("POST", "/api/v1/jobs", data=io.BytesIO(body),
                                   headers={"Content-Type": "application/json"})  # fmt: skip
        assert status == 202, job
        done = await f.finished(job["id"])
        assert done["status"] == "succeeded", done["error"]
        status, _, png = await f.call("GET", f"/api/v1/jobs/{job['id']}/outputs/0")
        assert status == 200
        assert png.startswith(b"\x89PNG")


async def test_a_body_over_the_limit_is_still_413(redis_config: RedisConfig) -> None:
    body = orjson.dumps({"graph": sized(JSON_BODY_LIMIT + 1000)})
    assert len(body) > JSON_BODY_LIMIT
    async with fleet(redis_config) as f:
        status, problem = await f.json("POST", "/api/v1/jobs", data=io.BytesIO(body),
                                       headers={"Content-Type": "application/json"})  # fmt: skip
        assert status == 413
        assert problem["code"] == "payload-too-large"
