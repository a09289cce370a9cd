"""The faults the chaos run injects into a live fleet, one at a time, each undone before the
next: SIGKILL a node (restarted with the same id), SIGKILL a ComfyUI stand-in (restarted:
queue and history lost), stall a stand-in (it resumes by itself), drop its websockets,
restart Redis (SIGTERM, AOF), SIGKILL the balancer (restarted), run a node under
`faketime` (its clock +-60 s or +-10 min off Redis's) for a while, cut a node off from
Redis (its proxy drops everything) for longer than its lease, and hold Redis at its memory
limit (maxmemory, noeviction) for 20 s. Before a stand-in is killed it is stalled and its
history saved, so executions can still be counted after."""

from __future__ import annotations

import asyncio
import json
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import redis.asyncio as aioredis

from comfyfleet.cli.fleet import Fleet
from comfyfleet.store.nodes import DEFAULT_LOST_AFTER_MS
from tests.support.proxy import PartitionProxy

# How long a node may miss heartbeats before the reaper takes it for lost (s).
LOST_BOUND_S = DEFAULT_LOST_AFTER_MS / 1000
KINDS = (
    "node_kill", "sim_kill", "sim_stall", "sim_drop_ws", "redis_restart", "balancer_restart",
    "node_skew", "node_partition", "redis_full",
)  # fmt: skip
# The node lease in the chaos fleet (ms): a partition outlasts it.
LEASE_MS = 6_000
# How long Redis is held at its memory limit (s; the short run holds it less).
FULL_S = 20.0
# Clock offsets (libfaketime syntax) a skewed node runs under, in turn.
SKEWS = ("+60s", "-60s", "+10m", "-10m")
FAKETIME_LIB = "/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1"
# Sampler steps of the job a partition cuts off (20 ms each in the chaos fleet): it runs
# well past half a lease, so only fencing can stop it in time.
LONG_JOB_STEPS = 400
TXT2IMG = Path(__file__).parents[2] / "workflows" / "txt2img-api.json"


@dataclass
class FaultRecord:
    kind: str
    target: str
    start_ms: int
    end_ms: int = 0
    # The stand-in index behind a cut-off node, and when its proxy was cut (ms).
    sim: int = -1
    cut_ms: int = 0


@dataclass
class Histories:
    """Every /history entry seen, per (stand-in, life, prompt id): a prompt in two lives of
    a stand-in ran twice; in one life, once."""

    entries: dict[tuple[int, int, str], str] = field(default_factory=dict)
    lives: dict[int, int] = field(default_factory=dict)
    # (stand-in, prompt id) -> when ComfyUI interrupted it (ms), for prompts it interrupted.
    interrupts: dict[tuple[int, str], int] = field(default_factory=dict)
    # (stand-in, life, prompt id) -> ms ComfyUI spent on it (start to its last message).
    gpu_ms: dict[tuple[int, int, str], int] = field(default_factory=dict)

    def add(self, sim: int, history: dict[str, Any]) -> None:
        life = self.lives.get(sim, 0)
        for prompt_id, entry in history.items():
            job_id = entry["prompt"][3].get("comfyfleet_job_id")
            if job_id:
                self.entries[(sim, life, prompt_id)] = job_id
            stamps = [int(d["timestamp"]) for _, d in entry.get("status", {}).get("messages", [])]
            if stamps:
                self.gpu_ms[(sim, life, prompt_id)] = max(stamps) - min(stamps)
            for kind, data in entry.get("status", {}).get("messages", []):
                if kind == "execution_interrupted":
                    self.interrupts[(sim, prompt_id)] = int(data["timestamp"])

    def next_life(self, sim: int) -> None:
        self.lives[sim] = self.lives.get(sim, 0) + 1

    def executions(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for job_id in self.entries.values():
            counts[job_id] = counts.get(job_id, 0) + 1
        return counts


def now_ms() -> int:
    return time.time_ns() // 1_000_000


class Injector:
    """Runs a seeded plan of faults against `fleet`; `hold_s` bounds how long a fault
    lasts (s), `gap_s` the pause between two (s)."""

    def __init__(
        self,
        fleet: Fleet,
        http: aiohttp.ClientSession,
        rng: random.Random,
        *,
        hang_s: float,
        gap_s: tuple[float, float] = (1.0, 3.0),
        hold_s: tuple[float, float] = (0.3, 2.0),
        full_s: float = FULL_S,
    ) -> None:
        self.fleet = fleet
        self.http = http
        self.rng = rng
        self.hang_s = hang_s
        self.gap_s = gap_s
        self.hold_s = hold_s
        self.full_s = full_s
        self.skew_s = (6.0, 10.0) if full_s >= FULL_S else (3.0, 5.0)
        self.records: list[FaultRecord] = []
        self.histories = Histories()
        self.proxies: list[PartitionProxy] = []  # one per node, between it and Redis
        self._skews = 0
        self.extra_ids: list[str] = []  # jobs the faults submit themselves

    def plan(self, per_kind: int) -> list[str]:
        kinds = [kind for kind in KINDS for _ in range(per_kind)]
        self.rng.shuffle(kinds)
        return kinds

    async def run(self, plan: list[str]) -> None:
        actions: dict[str, Callable[[], Awaitable[str]]] = {
            "node_kill": self._node_kill,
            "sim_kill": self._sim_kill,
            "sim_stall": self._sim_stall,
            "sim_drop_ws": self._sim_drop_ws,
            "redis_restart": self._redis_restart,
            "balancer_restart": self._balancer_restart,
            "node_skew": self._node_skew,
            "redis_full": self._redis_full,
        }
        for kind in plan:
            await asyncio.sleep(self.rng.uniform(*self.gap_s))
            record = FaultRecord(kind, "", now_ms())
            if kind == "node_partition":
                await self._node_partition(record)
            else:
                record.target = await actions[kind]()
            record.end_ms = now_ms()
            self.records.append(record)

    async def snapshot(self, sim: int) -> None:
        """Save a stand-in's history (the end of the run, or before it is killed)."""
        async with self.http.get(f"{self.fleet.sim_url(sim)}/history") as resp:
            self.histories.add(sim, await resp.json())

    async def _busy_index(self) -> int:
        """A random node holding jobs now (a fault there hits running work), else any."""
        indexes = list(range(len(self.fleet.nodes)))
        try:
            async with self.http.get(f"{self.fleet.balancer_url}/api/v1/nodes") as resp:
                nodes = (await resp.json())["nodes"] if resp.status == 200 else []
        except (aiohttp.ClientError, TimeoutError):
            nodes = []
        busy = {n["node_id"] for n in nodes if n.get("running") and n.get("state") == "ready"}
        candidates = [i for i in indexes if f"node-{i + 1}" in busy] or indexes
        return self.rng.choice(candidates)

    async def _hold(self) -> None:
        await asyncio.sleep(self.rng.uniform(*self.hold_s))

    async def _faults(self, sim: int, body: dict[str, Any]) -> None:
        async with self.http.post(f"{self.fleet.sim_url(sim)}/sim/faults", json=body) as resp:
            assert resp.status == 200, await resp.text()

    async def _node_kill(self) -> str:
        index = await self._busy_index()
        proc = self.fleet.nodes[index]
        proc.kill()
        # Half the time back within the lost bound (it resumes what it held), half the time
        # after it (the reaper has taken its jobs back).
        if self.rng.random() < 0.5:
            await self._hold()
        else:
            await asyncio.sleep(self.rng.uniform(LOST_BOUND_S + 1, LOST_BOUND_S + 3))
        proc.start()
        await asyncio.to_thread(proc.wait_healthy)
        return proc.name

    async def _sim_kill(self) -> str:
        index = await self._busy_index()
        proc = self.fleet.sims[index]
        # Freeze it (no prompt finishes from here on), save what it ran, then kill it.
        await self._faults(index, {"stall": True, "stall_ms": 0})
        await self.snapshot(index)
        proc.kill()
        self.histories.next_life(index)
        await self._hold()
        proc.start()
        await asyncio.to_thread(proc.wait_healthy)
        return proc.name

    async def _sim_stall(self) -> str:
        index = await self._busy_index()
        # Longer than the hang bound, so the node must notice; it resumes by itself.
        stall_ms = int(self.hang_s * 1000 * self.rng.uniform(1.5, 2.5))
        await self._faults(index, {"stall": True, "stall_ms": stall_ms})
        await asyncio.sleep(stall_ms / 1000)
        return self.fleet.sims[index].name

    async def _sim_drop_ws(self) -> str:
        index = await self._busy_index()
        await self._faults(index, {"drop_ws": True})
        return self.fleet.sims[index].name

    async def _redis_restart(self) -> str:
        assert self.fleet.redis is not None
        await self.fleet.redis.astop()  # SIGTERM: the AOF is flushed
        await self._hold()
        await self.fleet.redis.astart()
        return "redis"

    async def _node_skew(self) -> str:
        """Restart a node under faketime, let it work a while, restart it on true time."""
        index = await self._busy_index()
        proc = self.fleet.nodes[index]
        plain = dict(proc.env)
        offset = SKEWS[self._skews % len(SKEWS)]
        self._skews += 1
        proc.kill()
        proc.env = {**plain, "LD_PRELOAD": FAKETIME_LIB, "FAKETIME": offset,
                    "FAKETIME_DONT_FAKE_MONOTONIC": "1"}  # fmt: skip
        proc.start()
        await asyncio.to_thread(proc.wait_healthy)
        await asyncio.sleep(self.rng.uniform(*self.skew_s))
        proc.kill()
        proc.env = plain
        proc.start()
        await asyncio.to_thread(proc.wait_healthy)
        return f"{proc.name} {offset}"

    async def _long_job(self) -> tuple[str, int]:
        """Submit a job that runs for longer than half a lease and wait until a node runs
        it: (job id, index of that node). The job joins the run's checks (`extra_ids`)."""
        graph = json.loads(TXT2IMG.read_text())
        sampler = next(n for n in graph.values() if n["class_type"] == "KSampler")
        sampler["inputs"].update(steps=LONG_JOB_STEPS, seed=len(self.extra_ids) + 1)
        base = self.fleet.balancer_url
        async with self.http.post(
            f"{base}/api/v1/jobs", json={"graph": graph, "max_attempts": 10}
        ) as resp:
            assert resp.status == 202, await resp.text()
            job_id = str((await resp.json())["id"])
        self.extra_ids.append(job_id)
        for _ in range(400):
            async with self.http.get(f"{base}/api/v1/jobs/{job_id}") as resp:
                job = await resp.json() if resp.status == 200 else {}
            if job.get("status") == "running" and job.get("node_id"):
                return job_id, int(str(job["node_id"]).rsplit("-", 1)[1]) - 1
            await asyncio.sleep(0.05)
        raise AssertionError(f"long job {job_id} never ran")  # fmt: skip

    async def _node_partition(self, record: FaultRecord) -> None:
        """Cut the node running a long job off from Redis for longer than its lease (it
        must stop that prompt within half a lease), then heal."""
        _, index = await self._long_job()
        await asyncio.sleep(0.3)  # into the prompt
        record.target, record.sim, record.cut_ms = self.fleet.nodes[index].name, index, now_ms()
        await self.proxies[index].cut()
        await asyncio.sleep(LEASE_MS / 1000 * self.rng.uniform(1.3, 1.8))
        await self.proxies[index].heal()

    async def _redis_full(self) -> str:
        """Redis at its memory limit for FULL_S: every write refused, nothing evicted."""
        client = aioredis.Redis.from_url(self.fleet.redis_url)
        try:
            await client.config_set("maxmemory-policy", "noeviction")
            await client.config_set("maxmemory", "1")
            await asyncio.sleep(self.full_s)
        finally:
            await client.config_set("maxmemory", "0")
            await client.aclose()
        return "redis"

    async def _balancer_restart(self) -> str:
        proc = self.fleet.balancer
        assert proc is not None
        proc.kill()
        await self._hold()
        proc.start()
        await asyncio.to_thread(proc.wait_healthy)
        return proc.name
