"""Failure classes forced on real processes on loopback: a node killed with SIGKILL, a node
restarted with the same id, Redis restarted (AOF), the balancer restarted, and a submit
flood against a queue bound. The fleet has a Redis of its own, so it can be restarted."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from comfyfleet.cli.fleet import Fleet, FleetSpec
from comfyfleet.redis_server import free_port
from tests.e2e import conftest as e2e
from tests.e2e.conftest import PASSWORD, USER, Api
from tests.support.waiting import until

_colors = iter(range(1, 1 << 24))

# The e2e suite's authenticated session and API client, for this module's fleet.
http, api = e2e.http, e2e.api


def job_body() -> dict[str, Any]:
    """A small job whose graph no earlier job had, so ComfyUI's cache never serves it."""
    return {"workflow": "solid", "params": {"width": 32, "height": 32, "color": next(_colors)}}


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fleet]:
    spec = FleetSpec(
        nodes=2, balancer_port=0, first_node_port=0, namespace=f"rel{uuid.uuid4().hex[:8]}",
        username=USER, password=PASSWORD, node_ms=5, step_ms=5,
        data_dir=Path(tmp_path_factory.mktemp("rel")),
        node_args=["--hang-timeout", "60", "--retry-base-ms", "100", "--no-retry-jitter"],
    )  # fmt: skip
    with Fleet(spec) as fleet:
        yield fleet


async def _faults(http: aiohttp.ClientSession, fleet: Fleet, index: int, **body: Any) -> Any:
    async with http.post(f"{fleet.sim_url(index)}/sim/faults", json=body) as resp:
        assert resp.status == 200
        return await resp.json()


async def _stalled(http: aiohttp.ClientSession, fleet: Fleet, index: int) -> None:
    async def probe() -> bool:
        async with http.get(f"{fleet.sim_url(index)}/sim/faults") as resp:
            return bool((await resp.json())["stalled"])

    await until(probe, bool, what=f"sim-{index + 1} to stall")


async def _set_drain(api: Api, node: str, drain: bool) -> None:
    status, _ = await api.post(f"/api/v1/nodes/{node}/{'drain' if drain else 'resume'}")
    assert status == 202
    want = "draining" if drain else "ready"
    await until(lambda: api.node_state(node), lambda s: s == want, what=f"{node} {want}")


async def _running_on_stalled_node_1(api: Api, fleet: Fleet, http: aiohttp.ClientSession) -> str:
    """A job running on node-1 whose ComfyUI stalled after its first node."""
    await _set_drain(api, "node-2", True)
    await _faults(http, fleet, 0, stall_after_nodes=1)
    status, job = await api.post_job(job_body())
    assert status == 202
    await _stalled(http, fleet, 0)
    running = await api.job(job["id"])
    assert (running["status"], running["node_id"]) == ("running", "node-1")
    return str(job["id"])


async def _history_count(http: aiohttp.ClientSession, fleet: Fleet, index: int, job_id: str) -> int:
    async with http.get(f"{fleet.sim_url(index)}/history") as resp:
        history = await resp.json()
    return sum(1 for e in history.values() if e["prompt"][3].get("comfyfleet_job_id") == job_id)


async def test_killed_node_jobs_come_back_without_waiting_for_the_lease(
    api: Api, fleet: Fleet, http: aiohttp.ClientSession
) -> None:
    job_id = await _running_on_stalled_node_1(api, fleet, http)
    await _set_drain(api, "node-2", False)
    fleet.nodes[0].kill()
    try:
        done = await api.finished(job_id, timeout_s=60)
        assert (done["status"], done["node_id"]) == ("succeeded", "node-2")
        first = done["history"][0]
        # Taken back because the node was lost, not because its 30 s lease ran out.
        assert (first["node_id"], first["outcome"]) == ("node-1", "node_lost")
        assert first["ended_ms"] - first["started_ms"] < 30_000
        _status, nodes = await api.get("/api/v1/nodes")
        assert {n["node_id"]: n["state"] for n in nodes["nodes"]}["node-1"] == "lost"
    finally:
        await _faults(http, fleet, 0, stall=False)
        fleet.nodes[0].start()
        fleet.nodes[0].wait_healthy()
    await until(lambda: api.node_state("node-1"), lambda s: s == "ready", what="node-1 back")


async def test_node_restarted_with_the_same_id_follows_its_prompt(
    api: Api, fleet: Fleet, http: aiohttp.ClientSession
) -> None:
    job_id = await _running_on_stalled_node_1(api, fleet, http)
    assert fleet.balancer is not None
    try:
        fleet.balancer.kill()  # no reaper while the node is away: it must recover by itself
        fleet.nodes[0].kill()
        fleet.nodes[0].start()
        fleet.nodes[0].wait_healthy()
        await _faults(http, fleet, 0, stall=False)
    finally:
        fleet.balancer.start()
        fleet.balancer.wait_healthy()
    done = await api.finished(job_id, timeout_s=60)
    assert (done["status"], done["attempts"], done["node_id"]) == ("succeeded", 1, "node-1")
    assert [r["outcome"] for r in done["history"]] == ["succeeded"]
    assert await _history_count(http, fleet, 0, job_id) == 1  # followed, not run again
    await _set_drain(api, "node-2", False)


async def test_redis_restart_every_role_carries_on(
    api: Api, fleet: Fleet, http: aiohttp.ClientSession
) -> None:
    assert fleet.redis is not None
    before = [(await api.post_job(job_body()))[1]["id"] for _ in range(5)]
    await fleet.redis.astop()
    try:
        for method, path in [("GET", f"/api/v1/jobs/{before[0]}"), ("GET", "/api/v1/nodes"),
                             ("GET", "/api/v1/jobs"), ("POST", "/api/v1/jobs")]:  # fmt: skip
            body = job_body() if method == "POST" else None
            async with http.request(method, api.base + path, json=body) as resp:
                assert resp.status == 503, (path, await resp.text())
                assert resp.content_type == "application/problem+json"
                assert (await resp.json())["code"] == "store-unavailable"
                assert "Retry-After" in resp.headers
        status, _ready = await api.get("/readyz")
        assert status == 503
        assert (await api.get("/healthz"))[0] == 200
    finally:
        await fleet.redis.astart()  # same port, same data dir: the AOF brings the state back
    after = [(await api.post_job(job_body()))[1]["id"] for _ in range(5)]
    for job_id in before + after:
        done = await api.finished(job_id, timeout_s=60)
        assert done["status"] == "succeeded", done
        assert len([r for r in done["history"] if r["outcome"] == "succeeded"]) == 1
    await until(lambda: api.get("/readyz"), lambda r: r[0] == 200, what="ready again")


async def test_balancer_restart_loses_nothing(api: Api, fleet: Fleet) -> None:
    assert fleet.balancer is not None
    ids = [(await api.post_job(job_body()))[1]["id"] for _ in range(10)]
    fleet.balancer.kill()
    fleet.balancer.start()
    fleet.balancer.wait_healthy()
    for job_id in ids:
        assert (await api.finished(job_id, timeout_s=60))["status"] == "succeeded"


async def test_queue_bound_refuses_a_flood_with_429_and_retry_after(
    api: Api, fleet: Fleet, http: aiohttp.ClientSession
) -> None:
    port = free_port()
    bounded = fleet._proc(
        "balancer-bounded",
        ["balancer", "--port", str(port), "--queue-limit", "3"],
        port,
        "/healthz",
    )
    bounded.start()
    other = Api(http, f"http://127.0.0.1:{port}")
    try:
        bounded.wait_healthy()
        for node in ("node-1", "node-2"):
            await _set_drain(api, node, True)
        assert (await other.get("/readyz"))[0] == 503  # no node can take jobs
        accepted = [
            await other.post_job(job_body(), **{"Idempotency-Key": f"k{i}"}) for i in range(3)
        ]
        assert [status for status, _ in accepted] == [202, 202, 202]

        async def submit() -> tuple[int, str, str | None, Any]:
            async with http.post(f"{other.base}/api/v1/jobs", json=job_body()) as resp:
                body = await resp.json(content_type=None)
                return resp.status, resp.content_type, resp.headers.get("Retry-After"), body

        flood = await asyncio.gather(*(submit() for _ in range(100)))
        assert {(s, ct, ra) for s, ct, ra, _ in flood} == {(429, "application/problem+json", "5")}
        assert flood[0][3]["code"] == "queue-full"
        replay = await other.post_job(job_body(), **{"Idempotency-Key": "k0"})
        assert replay == (202, accepted[0][1] | {"queue_position": 0}) or replay[0] == 202
        _status, page = await other.get("/api/v1/jobs?status=queued&limit=200")
        assert len(page["jobs"]) == 3  # the flood left nothing behind
    finally:
        for node in ("node-1", "node-2"):
            await _set_drain(api, node, False)
        bounded.stop()
    for _, job in accepted:
        assert (await api.finished(job["id"], timeout_s=60))["status"] == "succeeded"
