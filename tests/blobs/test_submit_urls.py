"""`comfyfleet submit` downloads outputs from whatever URL the job gives -- the balancer,
a presigned S3 URL, a CDN -- and sends its credentials to the balancer only."""

from __future__ import annotations

import io
from pathlib import Path

import aiohttp
from aiohttp import web
from aiohttp.test_utils import TestServer

from comfyfleet.cli.submitter import Submitter

PNG = b"\x89PNG\r\n\x1a\nfake"
JOB_ID = "j" * 32


async def test_credentials_go_to_the_balancer_only(tmp_path: Path) -> None:
    seen: dict[str, str | None] = {}
    outputs: list[dict[str, object]] = []

    async def job(request: web.Request) -> web.Response:
        seen[request.path] = request.headers.get("Authorization")
        return web.json_response({"id": JOB_ID, "status": "succeeded", "outputs": outputs})

    async def serve(request: web.Request) -> web.Response:
        seen[request.path] = request.headers.get("Authorization")
        return web.Response(body=PNG, content_type="image/png")

    app = web.Application()
    app.router.add_get("/api/v1/jobs/{id}", job)
    app.router.add_get("/api/v1/jobs/{id}/outputs/0", serve)
    app.router.add_get("/cdn/x.png", serve)
    async with TestServer(app, host="127.0.0.1") as balancer, \
            TestServer(app, host="127.0.0.1") as cdn:  # fmt: skip
        base = str(balancer.make_url("")).rstrip("/")
        outputs += [
            {"index": 0, "filename": "a.png", "url": f"{base}/api/v1/jobs/{JOB_ID}/outputs/0"},
            {"index": 1, "filename": "b.png", "url": str(cdn.make_url("/cdn/x.png"))},
        ]
        submitter = Submitter(base, username="u", password="p", stream=io.StringIO())
        async with aiohttp.ClientSession() as session:
            done = await submitter._follow(session, JOB_ID, timeout_s=5)
            paths = await submitter._download(session, done, tmp_path)
    assert [p.read_bytes() for p in paths] == [PNG, PNG]
    assert seen[f"/api/v1/jobs/{JOB_ID}"] is not None  # the balancer gets the credentials
    assert seen[f"/api/v1/jobs/{JOB_ID}/outputs/0"] is not None
    assert seen["/cdn/x.png"] is None  # another host never sees them
