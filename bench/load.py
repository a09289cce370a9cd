"""Load generators: `wrk` for submit throughput (a C client, so the generator is not what
limits a 2-core machine), and an aiohttp burst of many concurrent submitters."""

from __future__ import annotations

import asyncio
import re
import shutil
import subprocess
import tempfile
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import orjson

from bench.clients import solid_graph

WRK_SCRIPT = """
wrk.method = "POST"
wrk.body = {body}
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = {auth}
"""


@dataclass
class WrkResult:
    requests_per_s: float
    non_2xx: int
    socket_errors: int


def have_wrk() -> bool:
    return shutil.which("wrk") is not None


def wrk_post(url: str, body: dict[str, Any], auth: str, *, connections: int,
             seconds: float) -> WrkResult:  # fmt: skip
    """POST `body` to `url` from `connections` keep-alive connections for `seconds`."""
    script = WRK_SCRIPT.format(body=_lua_string(orjson.dumps(body).decode()),
                               auth=_lua_string(auth))  # fmt: skip
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as handle:
        handle.write(script)
    try:
        out = subprocess.run(
            ["wrk", "-t1", f"-c{connections}", f"-d{seconds:.0f}s", "--timeout", "30s",
             "-s", handle.name, url],
            capture_output=True, text=True, check=True, timeout=seconds + 60,
        ).stdout  # fmt: skip
    finally:
        Path(handle.name).unlink()
    rate = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    non_2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    return WrkResult(rate, int(non_2xx.group(1)) if non_2xx else 0,
                     sum(map(int, errors.groups())) if errors else 0)  # fmt: skip


def _lua_string(text: str) -> str:
    return "[==[" + text + "]==]"


@dataclass
class BurstResult:
    accepted_ids: list[str]
    statuses: Counter[int]
    errors: Counter[str]
    seconds: float


async def burst(url: str, auth: str, *, submitters: int, jobs: int, pool: str) -> BurstResult:
    """`submitters` clients at once, each with its own connection, `jobs` in all, into
    `pool`; every submit carries an Idempotency-Key of its own, so a job accepted twice
    would show."""
    per_client = jobs // submitters
    ids: list[str] = []
    statuses: Counter[int] = Counter()
    errors: Counter[str] = Counter()
    start = asyncio.Event()

    async def client(n: int) -> None:
        connector = aiohttp.TCPConnector(limit=1)
        timeout = aiohttp.ClientTimeout(total=120)
        async with aiohttp.ClientSession(connector=connector, timeout=timeout,
                                         headers={"Authorization": auth}) as http:  # fmt: skip
            await start.wait()
            for i in range(per_client):
                headers = {"Idempotency-Key": f"burst-{n}-{i}"}
                try:
                    body = {"graph": solid_graph(), "pool": pool}
                    async with http.post(url, json=body, headers=headers) as resp:
                        statuses[resp.status] += 1
                        body = await resp.json(content_type=None)
                        if resp.status == 202:
                            ids.append(body["id"])
                except (aiohttp.ClientError, TimeoutError) as exc:
                    errors[type(exc).__name__] += 1

    tasks = [asyncio.create_task(client(n)) for n in range(submitters)]
    await asyncio.sleep(0.5)  # every client is set up before the burst starts
    loop = asyncio.get_running_loop()
    began = loop.time()
    start.set()
    await asyncio.gather(*tasks)
    return BurstResult(ids, statuses, errors, loop.time() - began)
