"""The chaos run's client side: submits N jobs at a steady pace through the balancer (retrying
through restarts with an Idempotency-Key, as a careful client does), then waits for every
accepted job to end and checks the promise, reading Redis directly for the record."""

from __future__ import annotations

import asyncio
import random
import statistics
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import aiohttp

from comfyfleet.models.job import Job
from comfyfleet.store.jobs import JobStore
from comfyfleet.store.scripts import fields_of
from tests.chaos.faults import FaultRecord, Injector

TERMINAL_STATES = ("succeeded", "failed", "cancelled")
SUBMIT_TRIES = 200
SUBMIT_RETRY_S = 0.25


def job_body(rng: random.Random, index: int) -> dict[str, Any]:
    """Mostly small solid images, some short txt2img runs; every graph unique (no cache)."""
    if rng.random() < 0.7:
        params = {"width": 32, "height": 32, "color": index + 1}
        return {"workflow": "solid", "params": params, "max_attempts": 10}
    params = {"prompt": f"chaos {index}", "steps": 6, "width": 64, "height": 64, "seed": index}
    return {"workflow": "txt2img", "params": params, "max_attempts": 10}


async def submit_all(
    http: aiohttp.ClientSession, base: str, rng: random.Random, count: int, spread_s: float,
    tag: str,
) -> list[str]:  # fmt: skip
    """Submit `count` jobs over about `spread_s` s; returns the accepted job ids."""
    ids: list[str] = []
    for index in range(count):
        ids.append(await _submit(http, base, job_body(rng, index), f"{tag}-{index}"))
        await asyncio.sleep(spread_s / count)
    return ids


async def _submit(http: aiohttp.ClientSession, base: str, body: dict[str, Any], key: str) -> str:
    for _ in range(SUBMIT_TRIES):
        try:
            async with http.post(
                f"{base}/api/v1/jobs", json=body, headers={"Idempotency-Key": key}
            ) as resp:
                if resp.status == 202:
                    return str((await resp.json())["id"])
                assert resp.status in (429, 502, 503, 507), (resp.status, await resp.text())
        except (aiohttp.ClientError, TimeoutError):
            pass  # the balancer is restarting: try again, the key keeps it one job
        await asyncio.sleep(SUBMIT_RETRY_S)
    raise AssertionError(f"job {key} was never accepted")


async def wait_all_ended(store: JobStore, ids: list[str], deadline_s: float) -> dict[str, Job]:
    """Every accepted job, once all have ended or the deadline passed (s)."""
    loop = asyncio.get_running_loop()
    end = loop.time() + deadline_s
    while True:
        jobs = await _load(store, ids)
        if all(j is not None and j.is_terminal for j in jobs.values()) or loop.time() > end:
            return {k: v for k, v in jobs.items() if v is not None}
        await asyncio.sleep(0.5)


async def _load(store: JobStore, ids: list[str]) -> dict[str, Job | None]:
    """Every job, read in pipelined batches (a batched read, not a state change)."""
    out: dict[str, Job | None] = {}
    for start in range(0, len(ids), 200):
        batch = ids[start : start + 200]
        async with store.redis.pipeline(transaction=False) as pipe:
            for job_id in batch:
                pipe.hgetall(store.keys.job(job_id))
            rows = await pipe.execute()
        out.update(
            (i, Job.from_fields(fields_of(r), i) if r else None)
            for i, r in zip(batch, rows, strict=True)
        )
    return out


@dataclass
class Figures:
    jobs: int = 0
    succeeded: int = 0
    failed: int = 0
    lost: list[str] = field(default_factory=list)
    duplicated: list[str] = field(default_factory=list)
    over_executed: list[str] = field(default_factory=list)
    missing_outputs: list[str] = field(default_factory=list)
    retries: int = 0
    executions: int = 0
    faults: dict[str, int] = field(default_factory=dict)
    failed_attempts: dict[str, int] = field(default_factory=dict)
    recover_ms: list[int] = field(default_factory=list)
    resumed: int = 0
    counters: dict[str, int] = field(default_factory=dict)
    # Clock and partition faults (see `clock_faults`).
    skew_taken_back: list[str] = field(default_factory=list)
    fenced_prompts: int = 0
    fenced_gpu_ms: int = 0
    gpu_ms: int = 0

    def percentile(self, q: float) -> int:
        if not self.recover_ms:
            return 0
        if len(self.recover_ms) == 1:
            return self.recover_ms[0]
        return int(statistics.quantiles(self.recover_ms, n=100, method="inclusive")[int(q) - 1])

    def report(self) -> str:
        lines = [
            f"jobs {self.jobs}: succeeded {self.succeeded}, failed {self.failed}",
            f"faults injected: {sum(self.faults.values())} {dict(sorted(self.faults.items()))}",
            f"lost {len(self.lost)}, duplicated outcomes {len(self.duplicated)}, "
            f"ran more often than attempts {len(self.over_executed)}, "
            f"succeeded without outputs {len(self.missing_outputs)}",
            f"retries (attempts beyond the first) {self.retries}; executions in ComfyUI "
            f"{self.executions}; failed attempts by cause "
            f"{dict(sorted(self.failed_attempts.items()))}",
            f"jobs a restarted node resumed (no new attempt) {self.resumed}; store counters "
            f"{self.counters}",
            f"time to recover (fault -> affected job running again), {len(self.recover_ms)} "
            f"jobs: p50 {self.percentile(50)} ms, p99 {self.percentile(99)} ms",
            f"ratios per job: lost {len(self.lost) / max(1, self.jobs):.4f}, doubled "
            f"{len(self.duplicated) / max(1, self.jobs):.4f}, executions in ComfyUI "
            f"{self.executions / max(1, self.jobs):.3f}; fenced prompts {self.fenced_prompts}, "
            f"GPU time wasted on fenced work {self.fenced_gpu_ms} ms of {self.gpu_ms} ms "
            f"({self.fenced_gpu_ms / max(1, self.gpu_ms):.4f}); attempts on skewed nodes "
            f"taken back {len(self.skew_taken_back)}",
        ]
        return "\n".join(lines)


async def check(
    store: JobStore, jobs: dict[str, Job], ids: list[str], executions: dict[str, int],
    faults: list[FaultRecord],
) -> Figures:  # fmt: skip
    figures = Figures(jobs=len(ids))
    for record in faults:
        figures.faults[record.kind] = figures.faults.get(record.kind, 0) + 1
    figures.lost = [i for i in ids if i not in jobs or not jobs[i].is_terminal]
    for job in jobs.values():
        figures.succeeded += job.status.value == "succeeded"
        figures.failed += job.status.value == "failed"
        figures.retries += max(0, job.attempts - 1)
        ran = executions.get(job.id, 0)
        figures.executions += ran
        if ran > job.attempts:
            figures.over_executed.append(job.id)
        events = [e for _, e in await store.events(job.id, count=10_000)]
        if _ended_more_than_once(events, job):
            figures.duplicated.append(job.id)
        figures.resumed += any(e["type"] == "resumed" for e in events)
        for record in job.history:
            if record.error is not None:
                code = record.error.code.value
                figures.failed_attempts[code] = figures.failed_attempts.get(code, 0) + 1
        figures.recover_ms += _recoveries(job, faults)
    stats = await store.stats()
    figures.counters = {k: stats[k] for k in ("retried", "expired", "released", "stale")}
    return figures


def _ended_more_than_once(events: list[dict[str, Any]], job: Job) -> bool:
    ends = [e for e in events if e["type"] == "state" and e.get("status") in TERMINAL_STATES]
    return len(ends) != 1 or ends[0]["status"] != job.status.value


def _recoveries(job: Job, faults: list[FaultRecord]) -> list[int]:
    """For each attempt cut short by a fault: ms from that fault's start to the start of the
    job's next attempt."""
    out: list[int] = []
    starts = [r.started_ms for r in job.history[1:]]
    for record, next_start in zip(job.history, starts, strict=False):
        if record.outcome == "succeeded" or record.error is None:
            continue
        cause = [f for f in faults if f.start_ms <= record.ended_ms]
        if cause:
            out.append(max(0, next_start - cause[-1].start_ms))
    return sorted(out)


async def outputs_present(http: aiohttp.ClientSession, base: str, job: Job) -> bool:
    """Every output of a succeeded job can be fetched, with the recorded size, as a PNG."""
    if not job.outputs:
        return False
    for ref in job.outputs:
        async with http.get(f"{base}/api/v1/jobs/{job.id}/outputs/{ref.index}") as resp:
            data = await resp.read()
            if resp.status != 200 or len(data) != ref.size or data[:4] != b"\x89PNG":
                return False
    return True


# How long past half a lease a fenced prompt may still stop (ms): the fence is checked
# between renewals and ComfyUI checks for an interrupt between nodes.
FENCE_SLACK_MS = 1_500


def clock_faults(figures: Figures, injector: Injector, jobs: Iterable[Job]) -> list[int]:
    """Fill in the clock and partition figures; returns, per prompt stopped during a
    partition, ms from the cut to ComfyUI's interrupt."""
    histories = injector.histories
    figures.gpu_ms = sum(histories.gpu_ms.values())
    after: list[int] = []
    for record in injector.records:
        if record.kind != "node_partition":
            continue
        for (sim, prompt_id), at in histories.interrupts.items():
            if sim == record.sim and record.cut_ms <= at <= record.end_ms:
                after.append(at - record.cut_ms)
                figures.fenced_prompts += 1
                figures.fenced_gpu_ms += max(
                    ms for (s, _, p), ms in histories.gpu_ms.items() if (s, p) == (sim, prompt_id)
                )
    skews = [r for r in injector.records if r.kind == "node_skew"]
    for job in jobs:
        for attempt in job.history:
            code = attempt.error.code.value if attempt.error else ""
            if code != "lease_expired":
                continue
            for r in skews:
                node = r.target.split()[0]
                if node == attempt.node_id and r.start_ms <= attempt.started_ms <= r.end_ms:
                    figures.skew_taken_back.append(job.id)
    return after
