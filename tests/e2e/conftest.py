"""A real fleet on loopback for the end-to-end tests: the suite's Redis, a balancer, two
nodes and two ComfyUI stand-ins, each its own process started through `comfyfleet`."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from comfyfleet.cli.fleet import Fleet, FleetSpec
from comfyfleet.redis_server import RedisServer
from comfyfleet.web.auth import basic_auth_header
from tests.support.s3 import S3Server
from tests.support.waiting import until

USER = "e2e"
PASSWORD = "e2e-" + uuid.uuid4().hex


def fleet_spec(
    redis_server: RedisServer, tmp_path_factory: pytest.TempPathFactory, **overrides: Any
) -> FleetSpec:
    """The e2e fleet: two nodes and stand-ins, a balancer, the suite's Redis."""
    fields: dict[str, Any] = {
        "nodes": 2,
        "balancer_port": 0,
        "first_node_port": 0,
        "redis_url": redis_server.url,
        "namespace": f"e2e{uuid.uuid4().hex[:8]}",
        "username": USER,
        "password": PASSWORD,
        "node_ms": 5,
        "step_ms": 5,
        "data_dir": Path(tmp_path_factory.mktemp("fleet")),
    }
    return FleetSpec(**{**fields, **overrides})


def store_env(request: pytest.FixtureRequest, **s3_settings: str) -> dict[str, str]:
    """The fleet's environment for the store a `params=["redis", "s3"]` fixture names: none
    for Redis (the default); for S3, the suite's S3 server plus `s3_settings`."""
    if request.param != "s3":
        return {}
    s3: S3Server = request.getfixturevalue("s3_server")
    return {**s3.env(s3.config()), **s3_settings}


@pytest.fixture(scope="module")
def fleet(redis_server: RedisServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fleet]:
    with Fleet(fleet_spec(redis_server, tmp_path_factory)) as fleet:
        yield fleet


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(
        headers={"Authorization": basic_auth_header(USER, PASSWORD)}
    ) as session:
        yield session


class Api:
    """A tiny client for the balancer's API, for readable tests."""

    def __init__(self, session: aiohttp.ClientSession, base: str) -> None:
        self.session = session
        self.base = base

    async def post_job(self, body: dict[str, Any], **headers: str) -> tuple[int, Any]:
        async with self.session.post(f"{self.base}/api/v1/jobs", json=body, headers=headers) as r:
            return r.status, await r.json(content_type=None)

    async def job(self, job_id: str) -> dict[str, Any]:
        async with self.session.get(f"{self.base}/api/v1/jobs/{job_id}") as r:
            assert r.status == 200, await r.text()
            data: dict[str, Any] = await r.json()
            return data

    async def finished(self, job_id: str, timeout_s: float = 60.0) -> dict[str, Any]:
        return await until(
            lambda: self.job(job_id),
            lambda j: j["status"] in ("succeeded", "failed", "cancelled"),
            timeout_s=timeout_s,
            what=f"job {job_id} to finish",
        )

    async def get(self, path: str) -> tuple[int, Any]:
        async with self.session.get(f"{self.base}{path}") as r:
            return r.status, await r.json(content_type=None)

    async def post(self, path: str, body: Any = None) -> tuple[int, Any]:
        async with self.session.post(f"{self.base}{path}", json=body) as r:
            return r.status, await r.json(content_type=None)

    async def delete(self, path: str) -> tuple[int, Any]:
        async with self.session.delete(f"{self.base}{path}") as r:
            return r.status, await r.json(content_type=None)

    async def raw(self, url: str) -> tuple[int, str, bytes]:
        async with self.session.get(url) as r:
            return r.status, r.content_type, await r.read()

    async def node_state(self, node_id: str) -> str:
        status, body = await self.get(f"/api/v1/nodes/{node_id}")
        return str(body.get("state")) if status == 200 else f"http {status}"


@pytest.fixture
def api(fleet: Fleet, http: aiohttp.ClientSession) -> Api:
    return Api(http, fleet.balancer_url)
