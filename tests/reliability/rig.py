"""One node's parts in this process, against a real stand-in and the suite's Redis: the
worker, runner and hang watchdog are stepped by the tests (`run_once`, `check_once`), and
the stand-in can be stalled or restarted on the same port."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aiohttp import web

from comfyfleet.blobs import BlobStore, RedisBlobStore
from comfyfleet.clock import FrozenClock
from comfyfleet.comfy import ComfyClient, ComfyOptions
from comfyfleet.config import RedisConfig, SimConfig
from comfyfleet.models.job import Job, JobSpec
from comfyfleet.models.retry import Backoff
from comfyfleet.node.runner import ComfyRunner
from comfyfleet.node.state import NodeStatus
from comfyfleet.node.watchdog import HangWatch
from comfyfleet.node.worker import Worker
from comfyfleet.sim import SIM_STATE, create_app
from comfyfleet.sim.faults import Faults
from comfyfleet.store.jobs import JobStore
from comfyfleet.store.results import ResultStore
from comfyfleet.tasks import stop
from tests.support.waiting import until

NODE_ID = "rig"
HANG_S = 10.0
FAST = ComfyOptions(
    request_timeout_s=5.0,
    connect_timeout_s=2.0,
    silence_s=0.2,
    unreachable_s=5.0,
    reconnect_initial_s=0.02,
    reconnect_max_s=0.1,
    ws_heartbeat_s=None,
)


def graph(color: int) -> dict[str, Any]:
    """Three nodes (solid -> invert -> save); `color` makes each job's graph its own."""
    return {
        "1": {"class_type": "EmptyImage",
              "inputs": {"width": 16, "height": 16, "batch_size": 1, "color": color}},
        "2": {"class_type": "ImageInvert", "inputs": {"image": ["1", 0]}},
        "3": {"class_type": "SaveImage", "inputs": {"images": ["2", 0], "filename_prefix": "rig"}},
    }  # fmt: skip


class SimProcess:
    """A stand-in served from this process; `restart` loses its queue and history, as a
    restarted ComfyUI does, and comes back on the same port."""

    def __init__(self, data_dir: Path, node_ms: float) -> None:
        self.config = SimConfig(port=0, node_ms=node_ms, step_ms=1, data_dir=str(data_dir))
        self.port = 0
        self.runner: web.AppRunner | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def faults(self) -> Faults:
        assert self.runner is not None
        return self.runner.app[SIM_STATE].faults

    def history(self) -> dict[str, Any]:
        assert self.runner is not None
        return self.runner.app[SIM_STATE].queue.history

    async def start(self) -> None:
        self.runner = web.AppRunner(create_app(self.config))
        await self.runner.setup()
        await web.TCPSite(self.runner, "127.0.0.1", self.port).start()
        self.port = self.runner.addresses[0][1]

    async def stop(self) -> None:
        if self.runner is not None:
            self.faults.resume()
            await self.runner.cleanup()
            self.runner = None

    async def restart(self) -> None:
        await self.stop()
        await self.start()


@dataclass
class Rig:
    store: JobStore
    sim: SimProcess
    comfy: ComfyClient
    status: NodeStatus
    runner: ComfyRunner
    worker: Worker
    watch: HangWatch
    watch_clock: FrozenClock

    async def submit(self, color: int, **kw: Any) -> Job:
        job, _ = await self.store.enqueue(JobSpec(graph=graph(color), **kw))
        return job

    async def get(self, job_id: str) -> Job:
        job = await self.store.get(job_id)
        assert job is not None
        return job

    async def settled(self, job_id: str, accept: Any = None, what: str = "") -> Job:
        """Until the job is back in the queue or finished, and no task of this node runs it."""
        ok = accept or (lambda j: j.status.value in ("queued", "succeeded", "failed", "cancelled"))
        return await until(
            lambda: self.get(job_id),
            lambda j: ok(j) and job_id not in self.worker.tasks,
            timeout_s=20,
            what=what or f"job {job_id} to settle",
        )

    async def stalled(self) -> None:
        async def probe() -> bool:
            return self.sim.faults.stalled

        await until(probe, bool, what="the stand-in to stall")

    def executions(self, job: Job) -> int:
        """How many prompts of this job ComfyUI ran (to any end) by its history."""
        return sum(
            1
            for entry in self.sim.history().values()
            if entry["prompt"][3].get("comfyfleet_job_id") == job.id
        )


def make_worker(
    store: JobStore, comfy: ComfyClient, status: NodeStatus, blobs: BlobStore | None = None
) -> Worker:
    runner = ComfyRunner(
        node_id=NODE_ID,
        store=store,
        results=ResultStore(blobs or RedisBlobStore(store.redis, store.keys)),
        comfy=comfy,
        backoff=Backoff(base_ms=0, jitter=False),
        stop_confirm_s=2.0,
    )
    return Worker(
        node_id=NODE_ID, store=store, runner=runner, capacity=2, can_claim=lambda: status.can_claim
    )


async def stop_worker(worker: Worker) -> None:
    """Like kill -9 for the node's work: tasks die without writing anything."""
    await stop(*worker.tasks.values(), report=False)


@contextlib.asynccontextmanager
async def make_rig(
    redis_config: RedisConfig, data_dir: Path, blobs: BlobStore | None = None
) -> AsyncIterator[Rig]:
    """The rig; outputs go to `blobs` (default: the Redis blob store)."""
    sim = SimProcess(data_dir, node_ms=30)
    await sim.start()
    store = JobStore.from_config(redis_config)
    comfy = ComfyClient(sim.url, client_id=f"comfyfleet-{NODE_ID}", options=FAST)
    status = NodeStatus(
        node_id=NODE_ID, comfy_url=sim.url, url="", started_ms=0, comfy_healthy=True
    )
    worker = make_worker(store, comfy, status, blobs)
    clock = FrozenClock()
    watch = HangWatch(comfy, status, worker, hang_s=HANG_S, clock=clock)
    assert isinstance(worker.runner, ComfyRunner)
    rig = Rig(store, sim, comfy, status, worker.runner, worker, watch, clock)
    try:
        yield rig
    finally:
        await stop_worker(rig.worker)
        await rig.comfy.close()
        await store.close()
        await sim.stop()
