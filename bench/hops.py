"""Where a zero-work job's time goes, hop by hop, through the fleet.

Runs sequential zero-work jobs (`POST /api/v1/jobs?wait=30`, then the output's bytes) on
one stand-in and one node, then reads each job's event log: the stream ids are Redis's
clock (ms) at each step, so the gaps between them are the hops: submit to `queued`
(admission, enqueue), `queued` to `running` (wake-up and claim), `running` to `submitted`
(the node's POST /prompt), ... `succeeded` (outputs stored, completion) to the response
(the waiting client's wake-up), and the output's transfer. Medians and means in ms
(resolution 1 ms per event gap; client-side times are `time.time()` on the same machine).

  python -m bench.hops [--jobs N] [--workers N]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp
import orjson

from bench import stand
from bench.clients import solid_graph
from bench.fleet_bench import AUTH

WARM_UP = 20


def parse_sse(text: str) -> list[dict[str, Any]]:
    """The logged events of an SSE body: {id_ms, name} (name is type or type:status)."""
    events: list[dict[str, Any]] = []
    current: dict[str, Any] = {}
    for line in [*text.splitlines(), ""]:
        if line.startswith("id: "):
            current["id_ms"] = int(line[4:].split("-")[0])
        elif line.startswith("event: "):
            current["name"] = line[7:]
        elif line.startswith("data: "):
            status = orjson.loads(line[6:]).get("status")
            if status:
                current["name"] += f":{status}"
        elif not line and current:
            if "id_ms" in current:
                events.append(current)
            current = {}
    return events


async def one_job(http: aiohttp.ClientSession, base: str) -> dict[str, list[float]]:
    gaps: dict[str, list[float]] = {}
    posted = time.time() * 1000
    async with http.post(f"{base}/api/v1/jobs?wait=30", json={"graph": solid_graph()}) as r:
        view = await r.json()
    answered = time.time() * 1000
    async with http.get(view["outputs"][0]["url"]) as r:
        await r.read()
    fetched = time.time() * 1000
    async with http.get(f"{base}/api/v1/jobs/{view['id']}/events") as r:
        events = parse_sse(await r.text())
    previous, name = posted, "post"
    for event in events:
        gaps.setdefault(f"{name} -> {event['name']}", []).append(event["id_ms"] - previous)
        previous, name = event["id_ms"], event["name"]
    gaps.setdefault(f"{name} -> response", []).append(answered - previous)
    gaps.setdefault("response -> output bytes", []).append(fetched - answered)
    gaps.setdefault("total", []).append(fetched - posted)
    return gaps


async def measure(base: str, jobs: int) -> dict[str, list[float]]:
    merged: dict[str, list[float]] = {}
    async with aiohttp.ClientSession(headers={"Authorization": AUTH}) as http:
        for n in range(WARM_UP + jobs):
            gaps = await one_job(http, base)
            if n >= WARM_UP:
                for hop, values in gaps.items():
                    merged.setdefault(hop, []).extend(values)
    return merged


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=200)
    parser.add_argument("--workers", type=int, default=1)
    args = parser.parse_args()
    logs = Path(tempfile.mkdtemp(prefix="comfyfleet-hops-"))
    with stand.stand_ins(1, 0, logs) as urls, stand.fleet(urls, logs, workers=args.workers) as f:
        merged = asyncio.run(measure(f.balancer_url, args.jobs))
    print("| hop | jobs | p50 ms | mean ms |\n|---|---:|---:|---:|")
    for hop, values in merged.items():
        print(f"| {hop} | {len(values)} | {statistics.median(values):.1f} | "
              f"{statistics.mean(values):.2f} |")  # fmt: skip


if __name__ == "__main__":
    main()
