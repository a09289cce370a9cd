"""`make bench`: the fleet against baselines measured in the same run.

Every figure is a ratio (or a difference) against a baseline measured here, now, on the same
machine: a client feeding the same ComfyUI stand-in directly, a bare aiohttp handler, the
same claim with a short queue. Prints a table, writes JSON (`--json`), stops by itself.

  python -m bench.fleet_bench [--quick] [--workers N] [--json out/bench.json]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import subprocess
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import redis.asyncio as aioredis

from bench import load, stand, store_figures
from bench.clients import DirectClient, fleet_job, solid_graph, submit, wait_ended
from comfyfleet.store.keys import Keys
from comfyfleet.web.auth import basic_auth_header

AUTH = basic_auth_header(stand.USER, stand.PASSWORD)
BURST_POOL = "burst"


@dataclass
class Row:
    figure: str
    fleet: float
    baseline: float
    unit: str
    ratio: float | None
    target: str
    ok: bool


@dataclass
class Plan:
    """How much of each measurement to run (`--quick` shrinks it for a smoke run)."""

    latency_jobs: int = 300
    t15_jobs: int = 400
    t200_jobs_per_node: int = 40
    submit_s: float = 8.0
    burst_submitters: int = 1000
    burst_jobs: int = 10_000
    claim_short: int = 1_000
    claim_long: int = 1_000_000
    memory_jobs: int = 5_000
    workers: int | None = None

    @classmethod
    def quick(cls, workers: int | None) -> Plan:
        return cls(40, 60, 8, 2.0, 100, 1000, 1000, 20_000, 500, workers)


def pct(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[max(0, int(q * len(ordered)) - 1)]


def steady_rate(times_s: list[float]) -> float:
    """Jobs per second between the 10th and the 90th percentile of completion times, so
    the start (queues filling) and the tail (the last jobs draining) do not count."""
    ordered = sorted(times_s)
    lo, hi = int(0.1 * len(ordered)), int(0.9 * len(ordered)) - 1
    return (hi - lo) / (ordered[hi] - ordered[lo])


async def _timed(run: Callable[[], Awaitable[int]]) -> float:
    start = time.perf_counter()
    await run()
    return (time.perf_counter() - start) * 1000


async def added_latency(plan: Plan, logs: Path) -> list[Row]:
    """A zero-work job, one at a time: direct vs through the fleet, same stand-in,
    alternating blocks so drift hits both alike."""
    direct_ms: list[float] = []
    fleet_ms: list[float] = []
    with stand.stand_ins(1, 0, logs) as (url,), stand.fleet([url], logs, workers=plan.workers) as f:
        async with aiohttp.ClientSession(headers={"Authorization": AUTH}) as http:
            client = DirectClient(http, url)
            await client.open()
            block = max(10, plan.latency_jobs // 6)
            for _ in range(5):  # warm-up: connections, caches, scripts
                await client.run(solid_graph())
                await fleet_job(http, f.balancer_url, solid_graph())
            for _ in range(plan.latency_jobs // block):
                for _ in range(block):
                    direct_ms.append(await _timed(lambda: client.run(solid_graph())))
                for _ in range(block):
                    fleet_ms.append(
                        await _timed(lambda: fleet_job(http, f.balancer_url, solid_graph()))
                    )
            await client.close()
    rows = []
    for name, q, bound in (("p50", 0.5, 2.0), ("p99", 0.99, 10.0)):
        fleet, direct = pct(fleet_ms, q), pct(direct_ms, q)
        rows.append(Row(f"added latency {name}, zero-work job (ms)", fleet, direct, "ms",
                        fleet / direct, f"fleet - direct <= {bound:g} ms",
                        fleet - direct <= bound))  # fmt: skip
    return rows


async def _direct_rate(urls: list[str], jobs_per_client: int) -> float:
    done: list[float] = []
    async with aiohttp.ClientSession() as http:

        async def feed(url: str) -> None:
            client = DirectClient(http, url)
            await client.open()
            for _ in range(jobs_per_client):
                await client.run(solid_graph())
                done.append(time.perf_counter())
            await client.close()

        await asyncio.gather(*(feed(url) for url in urls))
    return steady_rate(done)


async def _saturated_rate(urls: list[str], jobs_per_stand_in: int) -> float:
    """What the stand-ins do when their queues never run dry: every prompt is queued at
    once, and the rate is read from ComfyUI's own `execution_success` timestamps. No client
    can do better, since each prompt also costs the stand-in its own work beyond t (as it
    costs a real ComfyUI); K x 1000 / t leaves that out."""
    finished: list[float] = []
    async with aiohttp.ClientSession() as http:

        async def saturate(url: str) -> None:
            ids = []
            for _ in range(jobs_per_stand_in):
                async with http.post(f"{url}/prompt", json={"prompt": solid_graph()}) as r:
                    ids.append((await r.json())["prompt_id"])
            history: dict[str, Any] = {}
            while not all(i in history for i in ids):
                await asyncio.sleep(0.2)  # polling ComfyUI's own record, not timing it
                async with http.get(f"{url}/history") as r:
                    history = await r.json()
            for prompt_id in ids:
                stamps = dict(history[prompt_id]["status"]["messages"])
                finished.append(stamps["execution_success"]["timestamp"] / 1000)

        await asyncio.gather(*(saturate(url) for url in urls))
    return steady_rate(finished)


async def _fleet_rate(base: str, jobs: int) -> float:
    async with aiohttp.ClientSession(headers={"Authorization": AUTH}) as http:
        gate = asyncio.Semaphore(64)

        async def one_submit() -> str:
            async with gate:
                return await submit(http, base, solid_graph())

        ids = await asyncio.gather(*(one_submit() for _ in range(jobs)))
        waiters = asyncio.Semaphore(200)

        async def ended(job_id: str) -> dict[str, Any]:
            async with waiters:
                return await wait_ended(http, base, job_id)

        views = await asyncio.gather(*(ended(job_id) for job_id in ids))
    return steady_rate([view["finished_ms"] / 1000 for view in views])


async def throughput(plan: Plan, logs: Path, nodes: int, job_ms: float, jobs: int) -> Row:
    """K stand-ins x t ms jobs: the fleet's jobs/s against K clients feeding them directly."""
    with stand.stand_ins(nodes, job_ms, logs) as urls:
        direct = await _direct_rate(urls, jobs // nodes)
        if nodes > 1:
            saturated = await _saturated_rate(urls, jobs // nodes)
        with stand.fleet(urls, logs, workers=plan.workers) as f:
            fleet = await _fleet_rate(f.balancer_url, jobs)
    if nodes == 1:
        return Row(f"jobs/s, 1 node, t={job_ms:g} ms (vs one client back to back)", fleet,
                   direct, "jobs/s", fleet / direct, ">= 1.1x", fleet >= 1.1 * direct)  # fmt: skip
    # The direct ideal: the stand-ins never idle (see _saturated_rate).
    paper = nodes * 1000 / job_ms
    return Row(f"jobs/s, {nodes} nodes, t={job_ms:g} ms (vs the stand-ins never idle; "
               f"{nodes} x 1000/t = {paper:g}: {fleet / paper:.3f}x; {nodes} clients back to "
               f"back {direct:.1f})", fleet, saturated, "jobs/s", fleet / saturated,
               ">= 0.99x", fleet >= 0.99 * saturated)  # fmt: skip


async def submit_and_burst(plan: Plan, logs: Path) -> list[Row]:
    """Submit jobs/s (wrk, 64 connections) against a bare aiohttp handler, then a burst of
    concurrent submitters; no node runs, so every accepted job stays queued and countable."""
    body = {"graph": solid_graph()}
    rows = []
    with stand.stand_ins(1, 0, logs) as urls, stand.fleet(urls, logs, workers=plan.workers) as f:
        for node in f.nodes:
            node.stop()
        url = f"{f.balancer_url}/api/v1/jobs"
        if load.have_wrk():
            with stand.bare_server(logs) as bare:
                base = load.wrk_post(f"{bare}/api/v1/jobs", body, AUTH, connections=64,
                                     seconds=plan.submit_s)  # fmt: skip
            fleet = load.wrk_post(url, body, AUTH, connections=64, seconds=plan.submit_s)
            rows.append(Row("submit jobs/s, 64 connections (vs bare aiohttp)",
                            fleet.requests_per_s, base.requests_per_s, "jobs/s",
                            fleet.requests_per_s / base.requests_per_s, ">= 0.5x",
                            fleet.requests_per_s >= 0.5 * base.requests_per_s
                            and fleet.non_2xx == 0 and fleet.socket_errors == 0))  # fmt: skip
        redis = aioredis.Redis.from_url(f.redis_url)
        # A pool of its own: submits still in flight from wrk cannot blur the count.
        result = await load.burst(url, AUTH, submitters=plan.burst_submitters,
                                  jobs=plan.burst_jobs, pool=BURST_POOL)  # fmt: skip
        queued = int(await redis.hget(Keys(f.spec.namespace).depth, BURST_POOL) or 0)
        await redis.aclose()
    failures = plan.burst_jobs - result.statuses.get(202, 0) + sum(result.errors.values())
    exactly_once = len(set(result.accepted_ids)) == plan.burst_jobs == queued
    rows.append(Row(f"burst: {plan.burst_submitters} submitters, {plan.burst_jobs} jobs: "
                    f"errors (statuses {dict(result.statuses)}, {dict(result.errors)}; "
                    f"{queued} queued, {len(set(result.accepted_ids))} distinct)",
                    failures, 0, "errors", None, "0 errors, each accepted once",
                    failures == 0 and exactly_once))  # fmt: skip
    return rows


async def store_rows(plan: Plan) -> tuple[list[Row], dict[str, Any]]:
    with store_figures.OwnRedis() as url:
        memory = await store_figures.bytes_per_job(url, plan.memory_jobs)
        claims = await store_figures.claim_latency(url, plan.claim_short, plan.claim_long)
    short, long = claims["short"], claims["long"]
    rows = [
        Row(f"claim p50 at {long['queued']:,} queued vs {short['queued']:,} (ms)",
            long["p50_ms"], short["p50_ms"], "ms", long["p50_ms"] / short["p50_ms"],
            "<= 1.5x", long["p50_ms"] <= 1.5 * short["p50_ms"]),
        Row(f"Redis bytes per queued job beyond its graph (graph "
            f"{memory['graph_bytes']:.0f} B; hash {memory['memory_usage']['job hash']} B, "
            f"stream {memory['memory_usage']['event stream']} B)",
            memory["beyond_graph"], memory["graph_bytes"], "bytes", None, "<= 1000 B",
            memory["beyond_graph"] <= 1000),
    ]  # fmt: skip
    return rows, {"claims": claims, "memory": memory}


def machine() -> dict[str, Any]:
    model = next((line.split(":", 1)[1].strip() for line in
                  Path("/proc/cpuinfo").read_text().splitlines()
                  if line.startswith("model name")), platform.processor())  # fmt: skip
    redis = subprocess.run(["redis-server", "--version"], capture_output=True, text=True)
    return {"cpu": model, "cores": os.cpu_count(), "python": platform.python_version(),
            "redis": redis.stdout.strip(), "wrk": load.have_wrk()}  # fmt: skip


def table(rows: list[Row]) -> str:
    lines = ["| figure | fleet | baseline | ratio | target | ok |", "|---|---:|---:|---:|---|---|"]
    for r in rows:
        ratio = f"{r.ratio:.2f}x" if r.ratio is not None else ""
        lines.append(f"| {r.figure} | {r.fleet:,.2f} | {r.baseline:,.2f} | {ratio} | "
                     f"{r.target} | {'yes' if r.ok else 'NO'} |")  # fmt: skip
    return "\n".join(lines)


async def measure(plan: Plan) -> dict[str, Any]:
    """Every figure; the machine they were measured on."""
    logs = Path(tempfile.mkdtemp(prefix="comfyfleet-bench-"))
    started = time.monotonic()
    rows = await added_latency(plan, logs)
    rows.append(await throughput(plan, logs, 1, 15, plan.t15_jobs))
    rows.append(await throughput(plan, logs, 4, 200, 4 * plan.t200_jobs_per_node))
    rows += await submit_and_burst(plan, logs)
    extra_rows, details = await store_rows(plan)
    rows += extra_rows
    info = machine() | {"seconds": round(time.monotonic() - started, 1),
                        "balancer_workers": plan.workers, "logs": str(logs)}  # fmt: skip
    return {"machine": info, "rows": rows, "details": details}


def report(result: dict[str, Any], out: Path) -> int:
    """Print the table, write the JSON; exit status 1 when a target was missed."""
    info, rows = result["machine"], result["rows"]
    print(f"machine: {info['cpu']}, {info['cores']} cores; Python {info['python']}; "
          f"{info['redis']}; balancer workers {info['balancer_workers']}; "
          f"{info['seconds']} s")  # fmt: skip
    print(table(rows))
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_bytes(orjson.dumps(result | {"rows": [asdict(r) for r in rows]},
                                 option=orjson.OPT_INDENT_2))  # fmt: skip
    print(f"wrote {out}")
    return 0 if all(r.ok for r in rows) else 1


def cli() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a short smoke run")
    parser.add_argument(
        "--workers",
        type=int,
        default=None,
        help="balancer --workers (default: the balancer's own default)",
    )
    parser.add_argument(
        "--claim-queued",
        type=int,
        default=None,
        help="the long queue of the claim figure (default 1,000,000)",
    )
    parser.add_argument("--json", type=Path, default=Path("out/bench.json"))
    args = parser.parse_args()
    plan = Plan.quick(args.workers) if args.quick else Plan(workers=args.workers)
    if args.claim_queued:
        plan.claim_long = args.claim_queued
    raise SystemExit(report(asyncio.run(measure(plan)), args.json))


if __name__ == "__main__":
    cli()
