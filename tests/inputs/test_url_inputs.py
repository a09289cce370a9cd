"""POST /api/v1/inputs {"url": ...}: the balancer fetches an input image, only from where
the operator allowlisted, within limits, never following a redirect; every failure is a 4xx
naming `url`. The image server is real HTTP on loopback."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from comfyfleet.balancer import inputs_api
from comfyfleet.balancer.input_urls import InputUrlPolicy, input_url_config
from comfyfleet.config import InputUrlConfig, RedisConfig
from comfyfleet.errors import ConfigError
from tests.inputs.samples import png
from tests.inputs.test_upload_api import upload
from tests.live.inprocess import Balancer, balancer

IMAGE = png(40, 30, seed=11)
LOOPBACK = ("127.0.0.1/32",)


@pytest.fixture
async def images() -> AsyncIterator[str]:
    """An image server: /cat.png, /stream.png (no Content-Length), /moved, /gone, /text,
    /slow (never answers)."""
    never = asyncio.Event()

    async def cat(_: web.Request) -> web.Response:
        return web.Response(body=IMAGE, content_type="image/png")

    async def stream(request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse(headers={"Content-Type": "image/png"})
        resp.enable_chunked_encoding()
        await resp.prepare(request)
        for start in range(0, len(IMAGE), 100):
            await resp.write(IMAGE[start : start + 100])
        await resp.write_eof()
        return resp

    async def moved(_: web.Request) -> web.Response:
        raise web.HTTPFound("http://10.0.0.1/cat.png")

    async def text(_: web.Request) -> web.Response:
        return web.Response(text="not an image")

    async def slow(_: web.Request) -> web.Response:
        await never.wait()
        raise AssertionError("unreachable")

    app = web.Application()
    app.router.add_get("/cat.png", cat)
    app.router.add_get("/stream.png", stream)
    app.router.add_get("/moved", moved)
    app.router.add_get("/text", text)
    app.router.add_get("/slow", slow)
    async with TestServer(app, host="127.0.0.1") as server:
        yield str(server.make_url("")).rstrip("/")


async def fetch(bal: Balancer, body: Any) -> tuple[int, Any]:
    async with bal.http.post(f"{bal.url}/api/v1/inputs", json=body) as r:
        return r.status, await r.json(content_type=None)


async def test_off_unless_allowlisted(redis_config: RedisConfig, images: str) -> None:
    async with balancer(redis_config) as bal:
        status, body = await fetch(bal, {"url": f"{images}/cat.png"})
    assert (status, body["code"], body["field"]) == (422, "input-url-refused", "url")
    assert "--input-url-allow" in body["detail"]


async def test_an_allowlisted_url_is_stored_like_an_upload(
    redis_config: RedisConfig, images: str
) -> None:
    async with balancer(redis_config, input_urls=InputUrlConfig(allow=LOOPBACK)) as bal:
        status, fetched = await fetch(bal, {"url": f"{images}/cat.png"})
        assert status == 201, fetched
        assert (fetched["width"], fetched["height"], fetched["size"]) == (40, 30, len(IMAGE))
        status, streamed = await fetch(bal, {"url": f"{images}/stream.png"})
        assert status == 201, streamed
        status, uploaded = await upload(bal, IMAGE)
    assert status == 201
    assert fetched["id"] == streamed["id"] == uploaded["id"]  # same bytes, same input


@pytest.mark.parametrize(
    ("allow", "url", "words"),
    [
        (("images.example.com",), "{images}/cat.png", "not allowlisted"),
        (("localhost",), "http://localhost:{port}/cat.png", "127.0.0.1"),  # listed, loopback
        (("*.example.com",), "http://127.0.0.1:{port}/cat.png", "not allowlisted"),
        (LOOPBACK, "ftp://127.0.0.1/cat.png", "http or https"),
        (LOOPBACK, "http://user:pw@127.0.0.1:{port}/cat.png", "credentials"),
        (LOOPBACK, "http://no-such-host.invalid/cat.png", "does not resolve"),
    ],
)
async def test_refused_targets_name_the_reason(
    redis_config: RedisConfig, images: str, allow: tuple[str, ...], url: str, words: str
) -> None:
    port = images.rsplit(":", 1)[1]
    async with balancer(redis_config, input_urls=InputUrlConfig(allow=allow)) as bal:
        status, body = await fetch(bal, {"url": url.format(images=images, port=port)})
    assert (status, body["code"], body["field"]) == (422, "input-url-refused", "url"), body
    assert words in body["detail"]
    assert "pw" not in body["detail"]  # credentials are not echoed


async def test_failed_fetches_are_422s_naming_why(
    redis_config: RedisConfig, images: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    cfg = InputUrlConfig(allow=LOOPBACK, timeout_ms=300)
    async with balancer(redis_config, input_urls=cfg) as bal:
        status, body = await fetch(bal, {"url": f"{images}/moved"})
        assert (status, body["code"]) == (422, "input-url-failed")
        assert "redirect" in body["detail"]
        status, body = await fetch(bal, {"url": f"{images}/gone"})
        assert (status, body["detail"]) == (422, "url answered HTTP 404")
        status, body = await fetch(bal, {"url": f"{images}/slow"})
        assert (status, body["detail"]) == (422, "url did not answer within 0.3 s")
        status, body = await fetch(bal, {"url": f"{images}/text"})
        assert (status, body["code"]) == (415, "unsupported-media-type")
        status, body = await fetch(bal, {"url": f"{images}/cat.png", "extra": 1})
        assert status == 422
        status, body = await fetch(bal, {"link": f"{images}/cat.png"})
        assert status == 422
        monkeypatch.setattr(inputs_api, "UPLOAD_BODY_LIMIT", 1000)
        for path in ("/cat.png", "/stream.png"):  # declared length, then none
            status, body = await fetch(bal, {"url": f"{images}{path}"})
            assert (status, body["code"]) == (413, "payload-too-large"), path


async def test_bodies_of_other_types_are_415(redis_config: RedisConfig) -> None:
    async with (
        balancer(redis_config) as bal,
        bal.http.post(f"{bal.url}/api/v1/inputs", data=b"x") as r,
    ):
        assert r.status == 415
        assert "url" in (await r.json(content_type=None))["detail"]


def test_the_allowlist_takes_hosts_domains_and_networks() -> None:
    policy = InputUrlPolicy(["images.example.com", "*.cdn.example.net", "10.20.0.0/16"])
    assert policy.host_listed("images.example.com")
    assert policy.host_listed("IMAGES.example.com.")
    assert policy.host_listed("a.b.cdn.example.net")
    assert not policy.host_listed("cdn.example.net.evil.org")
    assert not policy.host_listed("evilimages.example.com")
    assert not InputUrlPolicy().enabled
    with pytest.raises(ConfigError, match="--input-url-allow"):
        input_url_config(["http://images.example.com"])
    assert input_url_config(["*.example.com"]).allow == ("*.example.com",)


async def test_a_fetched_input_runs_in_a_job(redis_config: RedisConfig, images: str) -> None:
    async with balancer(redis_config, input_urls=InputUrlConfig(allow=LOOPBACK)) as bal:
        _, fetched = await fetch(bal, {"url": f"{images}/cat.png"})
        job = {"workflow": "invert", "params": {"image": fetched["name"]}}
        async with bal.http.post(f"{bal.url}/api/v1/jobs", json=job) as r:
            assert r.status == 202, await r.text()
