"""The access log: one structured `request` line per answered request, its query redacted
like every line."""

from __future__ import annotations

import io

import aiohttp
import orjson
from aiohttp import web

from comfyfleet.config import LogConfig
from comfyfleet.logs.setup import configure_logging
from comfyfleet.web.server import make_runner


async def test_each_request_is_one_structured_line() -> None:
    stdout = io.StringIO()
    configure_logging(LogConfig(), role="balancer", stream=stdout)
    app = web.Application()

    async def hello(_: web.Request) -> web.Response:
        return web.Response(text="hi", status=202, headers={"X-Request-ID": "r-1"})

    app.router.add_get("/hello", hello)
    runner = make_runner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        async with aiohttp.ClientSession() as http:
            url = f"http://127.0.0.1:{port}/hello?api_key=hunter2hunter2&n=1"
            async with http.get(url) as r:
                assert r.status == 202
    finally:
        await runner.cleanup()
    lines = [orjson.loads(line) for line in stdout.getvalue().splitlines()]
    (line,) = [x for x in lines if x["event"] == "request"]
    assert "hunter2" not in stdout.getvalue()
    assert line["path"] == "/hello?api_key=***&n=1"
    assert (line["method"], line["status"]) == ("GET", 202)
    assert line["bytes"] > len("hi")  # sent, headers included
    assert (line["role"], line["remote"], line["request_id"]) == ("balancer", "127.0.0.1", "r-1")
    assert line["ms"] >= 0
