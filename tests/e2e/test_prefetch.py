"""Pipelining: a node keeps `prefetch` extra jobs queued inside its ComfyUI, no more."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from comfyfleet.cli.fleet import Fleet, FleetSpec
from comfyfleet.redis_server import RedisServer
from tests.e2e.conftest import PASSWORD, USER, Api
from tests.support.waiting import until


@pytest.fixture(scope="module")
def fleet(redis_server: RedisServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fleet]:
    """One node with prefetch 1 in front of one stand-in."""
    spec = FleetSpec(
        nodes=1, balancer_port=0, first_node_port=0, redis_url=redis_server.url,
        namespace=f"pf{uuid.uuid4().hex[:8]}", username=USER, password=PASSWORD,
        node_ms=5, step_ms=5, prefetch=1, data_dir=Path(tmp_path_factory.mktemp("pf")),
    )  # fmt: skip
    with Fleet(spec) as fleet:
        yield fleet


async def test_node_prefetches_exactly_one_job_into_comfyui(
    api: Api, fleet: Fleet, http: aiohttp.ClientSession
) -> None:
    sim = fleet.sims[0].health_url.removesuffix("/system_stats")

    async def comfy_queue() -> dict[str, Any]:
        async with http.get(f"{sim}/queue") as r:
            data: dict[str, Any] = await r.json()
            return data

    async with http.post(f"{sim}/sim/faults", json={"stall": True}) as r:
        assert r.status == 200
    ids = []
    try:
        for _ in range(3):
            status, job = await api.post_job({"workflow": "solid", "params": {"width": 8}})
            assert status == 202
            ids.append(job["id"])
        queue = await until(
            comfy_queue,
            lambda q: len(q["queue_running"]) + len(q["queue_pending"]) == 2,
            what="two prompts inside ComfyUI",
        )
        assert len(queue["queue_running"]) == 1
        third = await api.job(ids[2])
        assert third["status"] == "queued"
        assert third["queue_position"] == 0
    finally:
        async with http.post(f"{sim}/sim/faults", json={"stall": False}) as r:
            assert r.status == 200
    for job_id in ids:
        assert (await api.finished(job_id))["status"] == "succeeded"
