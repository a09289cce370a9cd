"""Outputs through a real fleet (processes on loopback), once with each blob store: the
node streams them from its ComfyUI stand-in into the store, the job records key, size,
type and sha256, and clients fetch them through the balancer (whole or by range) or, with
S3 and `--presign-outputs`, from presigned URLs with plain HTTP."""

from __future__ import annotations

import hashlib
import io
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import redis.asyncio as aioredis
from multidict import CIMultiDict

from comfyfleet.cli.fleet import Fleet
from comfyfleet.cli.submitter import Submitter
from comfyfleet.redis_server import RedisServer
from comfyfleet.store.keys import Keys
from tests.e2e.conftest import PASSWORD, USER, Api, fleet_spec, store_env

PRESIGN_S = 300


@pytest.fixture(scope="module", params=["redis", "s3"])
def fleet(
    request: pytest.FixtureRequest,
    redis_server: RedisServer,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Fleet]:
    env = store_env(request, BALANCER_PRESIGN_OUTPUTS=str(PRESIGN_S))
    with Fleet(fleet_spec(redis_server, tmp_path_factory, extra_env=env)) as fleet:
        yield fleet


async def finished_outputs(api: Api) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    status, job = await api.post_job({"workflow": "two-outputs", "params": {}})
    assert status == 202, job
    done = await api.finished(job["id"])
    assert done["status"] == "succeeded", done
    assert len(done["outputs"]) >= 2
    return done, done["outputs"]


async def get(api: Api, path: str, **headers: str) -> tuple[int, CIMultiDict[str], bytes]:
    async with api.session.get(f"{api.base}{path}", headers=headers) as r:
        return r.status, CIMultiDict(r.headers), await r.read()


async def test_outputs_stream_through_the_balancer_whole_and_by_range(api: Api) -> None:
    done, outputs = await finished_outputs(api)
    for output in outputs:
        path = f"/api/v1/jobs/{done['id']}/outputs/{output['index']}"
        status, headers, data = await get(api, path)
        assert status == 200
        assert (len(data), hashlib.sha256(data).hexdigest()) == (output["size"], output["sha256"])
        assert headers["Content-Type"] == "image/png"
        assert (headers["Accept-Ranges"], headers["ETag"]) == ("bytes", f'"{output["sha256"]}"')
        size = len(data)

        status, headers, part = await get(api, path, Range="bytes=8-23")
        assert (status, part, headers["Content-Range"]) == (206, data[8:24], f"bytes 8-23/{size}")
        status, headers, part = await get(api, path, Range="bytes=-12")
        assert (status, part) == (206, data[-12:])
        status, headers, part = await get(api, path, Range=f"bytes={size - 3}-")
        assert (status, part, headers["Content-Length"]) == (206, data[-3:], "3")
        # A range past the end: 416 problem+json saying the size; a stale If-Range: all.
        status, headers, body = await get(api, path, Range=f"bytes={size}-")
        assert (status, headers["Content-Range"]) == (416, f"bytes */{size}")
        assert b"range-not-satisfiable" in body
        status, _, whole = await get(api, path, Range="bytes=0-3", **{"If-Range": '"other"'})
        assert (status, whole) == (200, data)


async def test_output_urls_are_the_balancers_or_presigned(api: Api, fleet: Fleet) -> None:
    done, outputs = await finished_outputs(api)
    presigned = "BALANCER_PRESIGN_OUTPUTS" in fleet.spec.extra_env
    async with aiohttp.ClientSession() as plain:  # no credentials of any kind
        for output in outputs:
            if not presigned:
                assert output["url"].startswith(f"{api.base}/api/v1/jobs/{done['id']}/outputs/")
                continue
            assert "X-Amz-Signature=" in output["url"]
            assert f"X-Amz-Expires={PRESIGN_S}" in output["url"]
            async with plain.get(output["url"]) as r:
                assert r.status == 200
                data = await r.read()
            assert hashlib.sha256(data).hexdigest() == output["sha256"]


async def test_an_unknown_output_index_is_404(api: Api) -> None:
    done, outputs = await finished_outputs(api)
    status, _, body = await get(api, f"/api/v1/jobs/{done['id']}/outputs/{len(outputs)}")
    assert status == 404
    assert b"has no output" in body


async def test_an_expired_output_is_404_for_get_and_head(api: Api, fleet: Fleet) -> None:
    done, outputs = await finished_outputs(api)
    redis = aioredis.Redis.from_url(fleet.redis_url)
    try:
        pattern = Keys(fleet.spec.namespace).blob(f"outputs/*/{done['id']}/*")
        stored = await redis.keys(pattern)
        if not stored:
            pytest.skip("outputs live in S3 here; the S3 sweeper's tests cover expiry there")
        await redis.delete(*stored)
    finally:
        await redis.aclose()
    path = f"/api/v1/jobs/{done['id']}/outputs/{outputs[0]['index']}"
    status, _, body = await get(api, path)
    assert (status, b"has expired" in body) == (404, True)
    async with api.session.head(f"{api.base}{path}") as r:
        assert r.status == 404


async def test_submit_downloads_from_whichever_url_it_is_given(
    fleet: Fleet, tmp_path: Path
) -> None:
    """`comfyfleet submit` sends its credentials to the balancer only: a presigned URL is
    fetched without them (S3 refuses a request with two kinds of auth; a CDN must not see
    the password)."""
    submitter = Submitter(fleet.balancer_url, username=USER, password=PASSWORD,
                          stream=io.StringIO())  # fmt: skip
    body = {"workflow": "two-outputs", "params": {}}
    paths = await submitter.run(body, out=tmp_path, wait=True, timeout_s=60)
    assert len(paths) >= 2
    for path in paths:
        assert path.read_bytes().startswith(b"\x89PNG")
