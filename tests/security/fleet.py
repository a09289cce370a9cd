"""A balancer (with credentials) and, when asked, a node driving a ComfyUI stand-in, all in
this process on loopback with the suite's real Redis, served the way `comfyfleet balancer`
serves them (the hardened runner: header timeout, redacted parser errors)."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import aiohttp
from aiohttp import web
from pydantic import SecretStr

from comfyfleet.balancer.app import create_app as balancer_app
from comfyfleet.config import BalancerConfig, NodeConfig, RedisConfig, ServerConfig, SimConfig
from comfyfleet.node.app import create_app as node_app
from comfyfleet.sim import create_app as sim_app
from comfyfleet.web.auth import basic_auth_header
from comfyfleet.web.server import make_runner
from tests.support.waiting import until

USER = "sec"
PASSWORD = "pw-" + uuid.uuid4().hex
AUTH = {"Authorization": basic_auth_header(USER, PASSWORD)}


def server(**kw: Any) -> ServerConfig:
    return ServerConfig(port=0, username=USER, password=SecretStr(PASSWORD), **kw)


async def serve(app: web.Application, **runner_kw: Any) -> tuple[web.AppRunner, str]:
    runner = make_runner(app, shutdown_timeout_s=2.0, **runner_kw)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    host, port = runner.addresses[0][:2]
    return runner, f"http://{host}:{port}"


@dataclass
class Fleet:
    app: web.Application
    url: str
    http: aiohttp.ClientSession
    node_url: str | None = None

    async def call(
        self, method: str, path: str, *, auth: bool = True, url: str | None = None, **kw: Any
    ) -> tuple[int, dict[str, str], bytes]:
        headers = {**(AUTH if auth else {}), **kw.pop("headers", {})}
        async with self.http.request(method, (url or self.url) + path, headers=headers,
                                     **kw) as r:  # fmt: skip
            return r.status, dict(r.headers), await r.read()

    async def json(self, method: str, path: str, **kw: Any) -> tuple[int, Any]:
        status, _, body = await self.call(method, path, **kw)
        import orjson

        return status, orjson.loads(body) if body else None

    async def finished(self, job_id: str, timeout_s: float = 30.0) -> dict[str, Any]:
        async def probe() -> Any:
            return (await self.json("GET", f"/api/v1/jobs/{job_id}"))[1]

        job: dict[str, Any] = await until(
            probe, lambda j: j["status"] in ("succeeded", "failed", "cancelled"),
            timeout_s=timeout_s, what=f"job {job_id} to end")  # fmt: skip
        return job


@contextlib.asynccontextmanager
async def fleet(
    redis: RedisConfig, *, node: bool = False, runner_kw: dict[str, Any] | None = None,
    **cfg: Any,
) -> AsyncIterator[Fleet]:  # fmt: skip
    """A balancer built from `cfg` (BalancerConfig fields), and a node + stand-in if `node`."""
    runners: list[web.AppRunner] = []
    try:
        node_url = None
        if node:
            sim_runner, sim_url = await serve(sim_app(SimConfig(port=0, node_ms=0, step_ms=0)))
            runners.append(sim_runner)
            node_cfg = NodeConfig(server=server(), redis=redis, comfy_url=sim_url,
                                  node_id=f"sec-{uuid.uuid4().hex[:6]}", retry_jitter=False,
                                  retry_base_ms=0)  # fmt: skip
            node_runner, node_url = await serve(node_app(node_cfg))
            runners.append(node_runner)
        app = balancer_app(BalancerConfig(server=server(), redis=redis, **cfg))
        bal_runner, url = await serve(app, **(runner_kw or {}))
        runners.append(bal_runner)
        async with aiohttp.ClientSession() as http:
            f = Fleet(app, url, http, node_url)
            if node:
                await until(lambda: f.call("GET", "/readyz"), lambda r: r[0] == 200,
                            what="a ready node")  # fmt: skip
            yield f
    finally:
        for runner in reversed(runners):
            await runner.cleanup()
