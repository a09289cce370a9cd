"""Two balancer replicas and a node (driving a ComfyUI stand-in) in process on loopback,
sharing the suite's real Redis and one namespace, as replicas behind a load balancer do."""

from __future__ import annotations

import copy
import json
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestServer

from comfyfleet.balancer.app import create_app as balancer_app
from comfyfleet.config import BalancerConfig, RedisConfig
from tests.api.conftest import ADMIN_AUTH, Role, node, server, session  # noqa: F401
from tests.support.waiting import until

NAME = "vtest"
# A model-free graph whose output size tells which version ran.
GRAPH: dict[str, Any] = {
    "1": {"class_type": "EmptyImage", "_meta": {"title": "Canvas"},
          "inputs": {"width": 32, "height": 16, "batch_size": 1, "color": 255}},
    "2": {"class_type": "SaveImage", "_meta": {"title": "Save"},
          "inputs": {"filename_prefix": "vtest", "images": ["1", 0]}},
}  # fmt: skip
PARAMS: dict[str, Any] = {
    "description": "a canvas",
    "params": {
        "color": {"type": "integer", "minimum": 0, "maximum": 16777215, "default": 255,
                  "bind": [{"node": "Canvas", "input": "color"}]},
        "height": {"type": "integer", "minimum": 1, "maximum": 256, "default": 16,
                   "bind": [{"node": "Canvas", "input": "height"}]},
    },
}  # fmt: skip


def graph(width: int, title: str = "Canvas") -> dict[str, Any]:
    """The test graph drawing `width` pixels wide, its bound node titled `title`."""
    out = copy.deepcopy(GRAPH)
    out["1"]["inputs"]["width"] = width
    out["1"]["_meta"]["title"] = title
    return out


class Client:
    """One replica seen by one caller (an Authorization value)."""

    def __init__(self, role: Role, auth: str = ADMIN_AUTH) -> None:
        self.role = role
        self.auth = auth

    async def call(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        kwargs = {"json": body} if body is not None else {}
        status, _, raw = await self.role.call(method, path, auth=self.auth, **kwargs)
        return status, json.loads(raw) if raw else None

    async def publish(self, body: dict[str, Any], name: str = NAME) -> tuple[int, Any]:
        return await self.call("POST", f"/api/v1/workflows/{name}/versions", body)

    async def active(self, name: str = NAME) -> str | None:
        status, body = await self.call("GET", f"/api/v1/workflows/{name}")
        return str(body["version"]) if status == 200 else None

    async def finished(self, job_id: str) -> dict[str, Any]:
        async def probe() -> dict[str, Any]:
            status, job = await self.call("GET", f"/api/v1/jobs/{job_id}")
            assert status == 200, job
            return dict(job)

        return await until(
            probe, lambda j: j["status"] in ("succeeded", "failed", "cancelled"), what="job end"
        )


@pytest.fixture
async def replicas(
    redis_config: RedisConfig,
    session: aiohttp.ClientSession,  # noqa: F811
) -> AsyncIterator[list[Role]]:
    """Two balancers on one namespace (each its own app, Redis clients and caches)."""
    roles = []
    servers = []
    for _ in range(2):
        app = balancer_app(BalancerConfig(server=server(), redis=redis_config))
        srv = TestServer(app, host="127.0.0.1")
        await srv.start_server()
        servers.append(srv)
        roles.append(Role(app, str(srv.make_url("")).rstrip("/"), session))
    yield roles
    for srv in servers:
        await srv.close()
