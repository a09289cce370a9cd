"""Both roles in process on loopback with the suite's real Redis: a balancer, and a node
driving a ComfyUI stand-in. Credentials are random per session, so a leak is findable."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from pydantic import SecretStr

from comfyfleet.balancer.app import create_app as balancer_app
from comfyfleet.config import BalancerConfig, NodeConfig, RedisConfig, ServerConfig, SimConfig
from comfyfleet.node.app import create_app as node_app
from comfyfleet.sim import create_app as sim_app
from comfyfleet.web.auth import basic_auth_header
from tests.support.waiting import until

USER = "admin"
PASSWORD = "pw-" + uuid.uuid4().hex


@dataclass
class Role:
    """A running role: its app, its base URL, and a session without credentials."""

    app: web.Application
    url: str
    session: aiohttp.ClientSession

    async def call(
        self,
        method: str,
        path: str,
        auth: str | None = None,
        headers: dict[str, str] | None = None,
        **kwargs: Any,
    ) -> tuple[int, dict[str, str], bytes]:
        """(status, headers, body) of one request; `auth` is an Authorization value."""
        headers = dict(headers or {})
        if auth is not None:
            headers["Authorization"] = auth
        async with self.session.request(method, self.url + path, headers=headers, **kwargs) as r:
            return r.status, dict(r.headers), await r.read()


ADMIN_AUTH = basic_auth_header(USER, PASSWORD)


def server(port: int = 0, metrics: bool = True) -> ServerConfig:
    """With credentials, and /metrics on so the route walks and documents cover it."""
    return ServerConfig(port=port, username=USER, password=SecretStr(PASSWORD), metrics=metrics)


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as s:
        yield s


@pytest.fixture
async def balancer(
    redis_config: RedisConfig, session: aiohttp.ClientSession
) -> AsyncIterator[Role]:
    app = balancer_app(BalancerConfig(server=server(), redis=redis_config))
    async with TestServer(app, host="127.0.0.1") as srv:
        yield Role(app, str(srv.make_url("")).rstrip("/"), session)


@pytest.fixture
async def node(redis_config: RedisConfig, session: aiohttp.ClientSession) -> AsyncIterator[Role]:
    async with TestServer(
        sim_app(SimConfig(port=0, node_ms=0, step_ms=0)), host="127.0.0.1"
    ) as sim:
        cfg = NodeConfig(
            server=server(),
            redis=redis_config,
            comfy_url=str(sim.make_url("")).rstrip("/"),
            node_id=f"api-{uuid.uuid4().hex[:6]}",
        )
        app = node_app(cfg)
        async with TestServer(app, host="127.0.0.1") as srv:
            role = Role(app, str(srv.make_url("")).rstrip("/"), session)
            # Serve only once the node is up: it also needs its claim loop running before
            # it is stopped, or its shutdown waits out a grace period.
            await until(lambda: role.call("GET", "/readyz"), lambda r: r[0] == 200, what="node")
            yield role
