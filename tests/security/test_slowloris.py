"""Finding 8 (part): slowloris sockets were never closed (no header-read timeout)."""

from __future__ import annotations

import asyncio

from comfyfleet.config import RedisConfig
from comfyfleet.web.server import HEADER_TIMEOUT_S
from tests.security.fleet import fleet
from tests.security.graphs import solid

PARTIAL_HEAD = b"GET /api/v1/jobs HTTP/1.1\r\nHost: x\r\nX-Slow: "


async def _closed_by_server(url: str, first: bytes, timeout_s: float) -> bytes:
    host, port = url.removeprefix("http://").rsplit(":", 1)
    reader, writer = await asyncio.open_connection(host, int(port))
    try:
        writer.write(first)
        await writer.drain()
        # The server must close first: read() returns at EOF, or times out (test fails).
        return await asyncio.wait_for(reader.read(), timeout_s)
    finally:
        writer.close()


async def test_a_request_head_that_never_ends_is_cut_off(redis_config: RedisConfig) -> None:
    async with fleet(redis_config, runner_kw={"header_timeout_s": 1.0}) as f:
        assert await _closed_by_server(f.url, PARTIAL_HEAD, timeout_s=15) == b""
        assert await _closed_by_server(f.url, b"", timeout_s=15) == b""


async def test_the_production_default_is_a_bounded_header_timeout() -> None:
    assert 0 < HEADER_TIMEOUT_S <= 60


async def test_a_long_poll_outlives_the_header_timeout(redis_config: RedisConfig) -> None:
    async with fleet(redis_config, runner_kw={"header_timeout_s": 1.0}) as f:
        _, job = await f.json("POST", "/api/v1/jobs", json={"graph": solid()})
        # No node: the job stays queued, so the wait lasts its full 3 s, past the timeout.
        status, view = await f.json("GET", f"/api/v1/jobs/{job['id']}?wait=3")
        assert status == 200
        assert view["status"] == "queued"
