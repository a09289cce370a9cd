"""The faults that break job systems in production, one node in this process against the
suite's Redis and a stand-in: its clock far off the fleet's, cut off from Redis (through a
proxy the test cuts and heals) for longer than its lease, and Redis at its memory limit.

Time that decides anything is Redis's (TIME in the scripts); a node's own clock is only
measured and reported. A node that cannot confirm a lease for half of it stops the prompt
(fencing). A full Redis refuses new work (507) and loses nothing already accepted."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import redis.asyncio as aioredis
from aiohttp.test_utils import TestServer
from pydantic import SecretStr

from comfyfleet.balancer.app import create_app as balancer_app
from comfyfleet.balancer.reaper import Reaper
from comfyfleet.comfy import ComfyClient
from comfyfleet.config import BalancerConfig, RedisConfig, ServerConfig
from comfyfleet.models.job import Job, JobErrorCode, JobSpec, JobStatus
from comfyfleet.node.monitor import MAX_CLOCK_SKEW_MS, beat_once, heartbeat_loop
from comfyfleet.node.state import NodeStatus
from comfyfleet.redis_server import RedisServer
from comfyfleet.sim import SIM_STATE
from comfyfleet.store.jobs import JobStore
from comfyfleet.store.keys import Keys
from comfyfleet.store.nodes import NodeRegistry
from comfyfleet.tasks import stop
from comfyfleet.web.auth import basic_auth_header
from tests.reliability.rig import FAST, NODE_ID, SimProcess, graph, make_worker, stop_worker
from tests.support.clock import skew_redis
from tests.support.proxy import PartitionProxy
from tests.support.waiting import until

SKEW_MS = 60_000
# Short leases so a partition outlasts one in a second or two of real time.
LEASE_MS = 2_000


async def _node(
    redis_config: RedisConfig, sim: SimProcess, *, lease_ms: int = 30_000
) -> tuple[JobStore, NodeRegistry, NodeStatus, ComfyClient]:
    store = JobStore.from_config(redis_config)
    comfy = ComfyClient(sim.url, client_id=f"comfyfleet-{NODE_ID}", options=FAST)
    status = NodeStatus(node_id=NODE_ID, comfy_url=sim.url, url="", started_ms=0,
                        comfy_healthy=True)  # fmt: skip
    return store, NodeRegistry(store.redis, store.keys), status, comfy


def long_graph(color: int, inverts: int = 12) -> dict[str, Any]:
    """An image inverted `inverts` times: ComfyUI checks for an interrupt before each node,
    so a stop lands within one node's time."""
    out: dict[str, Any] = {"0": graph(color)["1"]}
    for i in range(1, inverts + 1):
        out[str(i)] = {"class_type": "ImageInvert", "inputs": {"image": [str(i - 1), 0]}}
    out[str(inverts + 1)] = {
        "class_type": "SaveImage",
        "inputs": {"images": [str(inverts), 0], "filename_prefix": "long"},
    }
    return out


def _executions(sim: SimProcess, job_id: str) -> int:
    return sum(
        1 for e in sim.history().values() if e["prompt"][3].get("comfyfleet_job_id") == job_id
    )


@pytest.mark.parametrize("node_ahead_ms", [SKEW_MS, -SKEW_MS], ids=["ahead", "behind"])
async def test_a_node_with_a_skewed_clock_says_so_and_runs_each_job_once(
    redis_config: RedisConfig, redis_client: aioredis.Redis, tmp_path: Path, node_ahead_ms: int
) -> None:
    keys = Keys(redis_config.namespace)
    # The fleet's clock runs `node_ahead_ms` behind this process's: to the node, its own
    # clock is that far ahead (or behind, negative).
    await skew_redis(redis_client, keys, -node_ahead_ms)
    sim = SimProcess(tmp_path / "sim", node_ms=20)
    await sim.start()
    store, registry, status, comfy = await _node(redis_config, sim)
    worker = make_worker(store, comfy, status)
    reaper = Reaper(JobStore.from_config(redis_config), registry)
    try:
        await beat_once(registry, store, status, worker)
        assert abs(status.clock_skew_ms - node_ahead_ms) < 1_000
        assert status.clock_skewed
        assert abs(node_ahead_ms) > MAX_CLOCK_SKEW_MS
        await beat_once(registry, store, status, worker)  # the next beat reports it
        listed = await registry.get(NODE_ID)  # what /api/v1/nodes shows
        assert listed is not None
        assert listed.state.value == "ready"
        assert listed.clock_skewed
        assert abs(listed.clock_skew_ms - node_ahead_ms) < 1_000
        jobs = [(await store.enqueue(JobSpec(graph=graph(c))))[0] for c in (10, 20, 30)]

        async def step() -> list[Job]:
            await worker.run_once()
            await reaper.run_once()
            await beat_once(registry, store, status, worker)
            return [j for j in [await store.get(job.id) for job in jobs] if j is not None]

        done = await until(
            step, lambda js: all(j.status is JobStatus.SUCCEEDED for j in js), what="jobs"
        )
        fleet_now = await store.now_ms()
        for job in done:
            assert job.attempts == 1
            assert job.history[0].error is None
            assert _executions(sim, job.id) == 1
            # Stamped by the fleet's clock, not the node's.
            assert abs(fleet_now - job.finished_ms) < abs(node_ahead_ms) / 2  # type: ignore[operator]
        assert abs(fleet_now + node_ahead_ms - time.time() * 1000) < 1_000
    finally:
        await stop_worker(worker)
        await comfy.close()
        await store.close()
        await reaper.jobs.close()
        await sim.stop()


@pytest.fixture
async def proxy(redis_server: RedisServer) -> AsyncIterator[PartitionProxy]:
    host, port = redis_server.url.split("//", 1)[1].split("/", 1)[0].rsplit(":", 1)
    proxy = PartitionProxy(host, int(port))
    await proxy.start()
    yield proxy
    await proxy.close()


async def test_a_node_cut_off_from_redis_stops_its_prompt_and_claims_after_the_heal(
    redis_config: RedisConfig, proxy: PartitionProxy, tmp_path: Path
) -> None:
    # The node reaches Redis only through the proxy; the balancer side directly.
    node_config = RedisConfig(url=proxy.url, namespace=redis_config.namespace)
    fleet = JobStore.from_config(redis_config)
    sim = SimProcess(tmp_path / "sim", node_ms=300)  # about 4 s a job
    await sim.start()
    store, registry, status, comfy = await _node(node_config, sim)
    worker = make_worker(store, comfy, status)
    worker.lease_ms = LEASE_MS
    reaper = Reaper(fleet, NodeRegistry(fleet.redis, fleet.keys))
    try:
        await beat_once(registry, store, status, worker)
        job, _ = await fleet.enqueue(JobSpec(graph=long_graph(40)))
        assert [j.id for j in await worker.run_once()] == [job.id]
        await until(lambda: _running(sim), bool, what="the prompt to run in ComfyUI")
        await proxy.cut()
        fenced = await until(
            lambda: _ended(sim, job.id), lambda e: e is not None, timeout_s=20,
            what="the fenced prompt to be interrupted",
        )  # fmt: skip
        assert fenced == "interrupted"
        assert worker.fenced
        assert worker.fenced_total == 1
        held = await fleet.get(job.id)
        assert held is not None
        # Stopped before the lease it could not renew had run out.
        assert _interrupted_at(sim, job.id) <= held.lease_deadline_ms  # type: ignore[operator]
        assert await worker.run_once() == []  # fenced: claims nothing
        taken = await until(
            _reaped(reaper, fleet, job.id), lambda j: j.status is JobStatus.QUEUED,
            timeout_s=20, what="the reaper to take the job back",
        )  # fmt: skip
        assert taken.history[-1].error is not None
        assert taken.history[-1].error.code is JobErrorCode.LEASE_EXPIRED
        await proxy.heal()
        await until(lambda: _beat(registry, store, status, worker), bool, what="a heartbeat")
        assert not worker.fenced

        async def claim_and_look() -> Job | None:
            await worker.run_once()
            return await fleet.get(job.id)

        done = await until(
            claim_and_look, lambda j: j is not None and j.status is JobStatus.SUCCEEDED,
            timeout_s=30, what="the job to succeed after the heal",
        )  # fmt: skip
        assert done.attempts == 2
        events = await fleet.events(job.id, count=200)
        ends = [e for _, e in events if e["type"] == "state" and e["status"] == "succeeded"]
        assert len(ends) == 1
    finally:
        await stop_worker(worker)
        await comfy.close()
        await store.close()
        await fleet.close()
        await sim.stop()


async def _running(sim: SimProcess) -> bool:
    assert sim.runner is not None
    return bool(sim.runner.app[SIM_STATE].queue.running)


async def _ended(sim: SimProcess, job_id: str) -> str | None:
    for entry in sim.history().values():
        if entry["prompt"][3].get("comfyfleet_job_id") == job_id:
            messages = [m[0] for m in entry["status"]["messages"]]
            return (
                "interrupted"
                if "execution_interrupted" in messages
                else entry["status"]["status_str"]
            )
    return None


def _interrupted_at(sim: SimProcess, job_id: str) -> int:
    for entry in sim.history().values():
        if entry["prompt"][3].get("comfyfleet_job_id") == job_id:
            for kind, data in entry["status"]["messages"]:
                if kind == "execution_interrupted":
                    return int(data["timestamp"])
    raise AssertionError("no interrupt recorded")


def _reaped(reaper: Reaper, fleet: JobStore, job_id: str):  # type: ignore[no-untyped-def]
    async def look() -> Job:
        await reaper.run_once()
        job = await fleet.get(job_id)
        assert job is not None
        return job

    return look


async def _beat(
    registry: NodeRegistry, store: JobStore, status: NodeStatus, worker: object
) -> bool:
    try:
        await beat_once(registry, store, status, worker)  # type: ignore[arg-type]
    except Exception:
        return False
    return True


async def test_a_full_redis_refuses_submits_and_loses_nothing(
    redis_config: RedisConfig, redis_client: aioredis.Redis, tmp_path: Path
) -> None:
    user, password = "u", "p-" + uuid.uuid4().hex
    app = balancer_app(BalancerConfig(
        server=ServerConfig(port=0, username=user, password=SecretStr(password)),
        redis=redis_config,
    ))  # fmt: skip
    auth = {"Authorization": basic_auth_header(user, password)}
    sim = SimProcess(tmp_path / "sim", node_ms=300)
    await sim.start()
    store, registry, status, comfy = await _node(redis_config, sim)
    worker = make_worker(store, comfy, status)
    policy = (await redis_client.config_get("maxmemory-policy"))["maxmemory-policy"]
    beats: asyncio.Task[None] | None = None
    try:
        async with TestServer(app, host="127.0.0.1") as server:
            client = str(server.make_url("")).rstrip("/") + "/"
            async with aiohttp.ClientSession(headers=auth) as http:
                body = {"workflow": "solid", "params": {}}
                async with http.post(f"{client}api/v1/jobs", json=body) as resp:
                    assert resp.status == 202
                    accepted = (await resp.json())["id"]
                await beat_once(registry, store, status, worker)
                beats = asyncio.create_task(heartbeat_loop(registry, store, status, worker))
                assert [j.id for j in await worker.run_once()] == [accepted]
                await redis_client.config_set("maxmemory-policy", "noeviction")
                await redis_client.config_set("maxmemory", "1")
                async with http.post(f"{client}api/v1/jobs", json=body) as resp:
                    assert resp.status == 507
                    assert resp.headers["Retry-After"]
                    problem = await resp.json()
                    assert problem["code"] == "store-full"
                async with http.get(f"{client}readyz") as resp:
                    assert resp.status == 503
                    assert any("redis is full" in p for p in (await resp.json())["problems"])
                # The prompt ends in ComfyUI while Redis refuses writes: the outcome waits.
                await until(lambda: _ended(sim, accepted), lambda e: e is not None,
                            what="the prompt to end")  # fmt: skip
                job = await store.get(accepted)
                assert job is not None
                assert job.status is JobStatus.RUNNING
                await redis_client.config_set("maxmemory", "0")
                done = await until(
                    lambda: store.get(accepted),
                    lambda j: j is not None and j.status is JobStatus.SUCCEEDED,
                    what="the completion to land once memory frees",
                )  # fmt: skip
                assert done is not None
                assert done.attempts == 1
                async with http.get(f"{client}readyz") as resp:
                    assert "redis is full" not in str(await resp.json())
    finally:
        await stop(beats)
        await redis_client.config_set("maxmemory", "0")
        await redis_client.config_set("maxmemory-policy", policy)
        await stop_worker(worker)
        await comfy.close()
        await store.close()
        await sim.stop()
