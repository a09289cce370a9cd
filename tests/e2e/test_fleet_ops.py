"""Operating the fleet: two balancers on one Redis, a node whose ComfyUI is down, drain."""

from __future__ import annotations

import aiohttp

from comfyfleet.cli.fleet import Fleet
from comfyfleet.redis_server import free_port
from tests.e2e.conftest import Api
from tests.support.waiting import until


async def test_two_balancers_serve_the_same_jobs(
    api: Api, fleet: Fleet, http: aiohttp.ClientSession
) -> None:
    assert fleet.balancer is not None
    port = free_port()
    second = fleet._proc("balancer-2", ["balancer", "--port", str(port)], port, "/healthz")
    second.start()
    try:
        second.wait_healthy()
        other = Api(http, f"http://127.0.0.1:{port}")
        status, job = await other.post_job({"workflow": "solid", "params": {"width": 32}})
        assert status == 202
        done = await api.finished(job["id"])  # followed through the first balancer
        assert done["status"] == "succeeded"
        code, _, data = await other.raw(
            f"http://127.0.0.1:{port}/api/v1/jobs/{job['id']}/outputs/0"
        )
        assert code == 200
        assert data[:4] == b"\x89PNG"
    finally:
        second.stop()


async def _nodes_of(api: Api, job_ids: list[str]) -> set[str]:
    return {(await api.finished(job_id))["node_id"] for job_id in job_ids}


async def test_node_with_comfyui_down_takes_no_jobs(api: Api, fleet: Fleet) -> None:
    sim = fleet.sims[0]
    sim.kill()
    try:
        await until(lambda: api.node_state("node-1"), lambda s: s == "unhealthy", what="unhealthy")
        ids = []
        for _ in range(4):
            status, job = await api.post_job({"workflow": "solid", "params": {"width": 16}})
            assert status == 202
            ids.append(job["id"])
        assert await _nodes_of(api, ids) == {"node-2"}
    finally:
        sim.start()
        sim.wait_healthy()
    await until(lambda: api.node_state("node-1"), lambda s: s == "ready", what="node-1 back")


async def test_drained_node_takes_no_jobs_until_resumed(api: Api) -> None:
    status, _ = await api.post("/api/v1/nodes/node-2/drain")
    assert status == 202
    try:
        await until(lambda: api.node_state("node-2"), lambda s: s == "draining", what="draining")
        ids = []
        for _ in range(4):
            status, job = await api.post_job({"workflow": "solid", "params": {"width": 16}})
            assert status == 202
            ids.append(job["id"])
        assert await _nodes_of(api, ids) == {"node-1"}
    finally:
        status, _ = await api.post("/api/v1/nodes/node-2/resume")
        assert status == 202
    await until(lambda: api.node_state("node-2"), lambda s: s == "ready", what="resumed")
    status, body = await api.get("/api/v1/nodes/nope")
    assert status == 404
    assert body["code"] == "not-found"
