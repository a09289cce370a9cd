"""The submit baseline: a bare aiohttp handler that parses the same JSON body as
`POST /api/v1/jobs` and answers 202 with a small JSON document. Usage: bare_server.py PORT"""

from __future__ import annotations

import sys
import uuid

import orjson
from aiohttp import web


async def submit(request: web.Request) -> web.Response:
    body = orjson.loads(await request.read())
    if not isinstance(body, dict) or "graph" not in body:
        return web.json_response({"detail": "graph missing"}, status=422)
    job = {"id": uuid.uuid4().hex, "status": "queued"}
    return web.Response(body=orjson.dumps(job), status=202, content_type="application/json")


async def healthz(_: web.Request) -> web.Response:
    return web.Response(text="ok")


def main() -> None:
    app = web.Application()
    app.router.add_post("/api/v1/jobs", submit)
    app.router.add_get("/healthz", healthz)
    web.run_app(app, host="127.0.0.1", port=int(sys.argv[1]), print=None, access_log=None)


if __name__ == "__main__":
    main()
