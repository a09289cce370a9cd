"""`comfyfleet balancer --workers N` as real processes: N workers share one port, a dead
worker is replaced, SIGHUP swaps every worker for a new one, SIGTERM lets a request in
flight finish, and the reaper runs once per fleet however many workers contend."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
import redis.asyncio as aioredis

from comfyfleet.redis_server import RedisServer, free_port
from comfyfleet.store.keys import Keys
from comfyfleet.web.auth import basic_auth_header
from tests.support.procs import alive, children_of
from tests.support.waiting import until

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="uses /proc")

USER, PASSWORD = "workers", "pw-" + uuid.uuid4().hex
AUTH = {"Authorization": basic_auth_header(USER, PASSWORD)}
WORKERS = 2
START_S = 60.0


class Balancer:
    def __init__(self, process: asyncio.subprocess.Process, url: str, namespace: str) -> None:
        self.process = process
        self.url = url
        self.keys = Keys(namespace)

    def workers(self) -> set[int]:
        return {pid for pid in children_of(self.process.pid) if alive(pid)}

    async def healthy(self, http: aiohttp.ClientSession) -> bool:
        try:
            async with http.get(f"{self.url}/healthz") as resp:
                return resp.status == 200
        except aiohttp.ClientError:
            return False


@pytest.fixture
async def balancer(redis_server: RedisServer, tmp_path: Path) -> AsyncIterator[Balancer]:
    port, namespace = free_port(), f"wk{uuid.uuid4().hex[:8]}"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("API_", "REDIS_"))}
    env.update(API_USERNAME=USER, API_PASSWORD=PASSWORD, REDIS_URL=redis_server.url)
    log = (tmp_path / "balancer.log").open("wb")
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "comfyfleet", "balancer", "--port", str(port),
        "--workers", str(WORKERS), "--namespace", namespace, stdout=log, stderr=log, env=env,
    )  # fmt: skip
    running = Balancer(process, f"http://127.0.0.1:{port}", namespace)
    try:
        # The supervisor says so once every worker listens.
        log_path = tmp_path / "balancer.log"
        await until(lambda: asyncio.sleep(0, log_path.read_text()),
                    lambda text: f"{WORKERS} workers on" in text or process.returncode is not None,
                    timeout_s=START_S, what="the workers to listen")  # fmt: skip
        assert process.returncode is None, log_path.read_text()
        assert len(running.workers()) == WORKERS
        yield running
    finally:
        if process.returncode is None:
            process.terminate()
            await process.wait()
        log.close()


async def test_workers_share_the_port_and_a_dead_one_is_replaced(balancer: Balancer) -> None:
    before = balancer.workers()
    victim = min(before)
    os.kill(victim, signal.SIGKILL)
    after = await until(lambda: asyncio.sleep(0, balancer.workers()),
                        lambda w: len(w) == WORKERS and victim not in w,
                        what="a replacement worker")  # fmt: skip
    assert after - before  # a new pid
    assert before - {victim} <= after  # the survivor kept serving
    async with aiohttp.ClientSession() as http:
        await until(lambda: balancer.healthy(http), bool, what="the port to answer")


async def test_sighup_swaps_every_worker_and_the_port_keeps_answering(
    balancer: Balancer,
) -> None:
    before = balancer.workers()
    balancer.process.send_signal(signal.SIGHUP)
    after = await until(lambda: asyncio.sleep(0, balancer.workers()),
                        lambda w: len(w) == WORKERS and not w & before,
                        timeout_s=START_S, what="a new generation of workers")  # fmt: skip
    assert len(after) == WORKERS
    async with aiohttp.ClientSession() as http:
        assert await balancer.healthy(http)


async def _blocked_reads(redis: aioredis.Redis) -> int:
    return sum(1 for c in await redis.client_list() if c.get("cmd") == "xread")


async def test_sigterm_lets_a_request_in_flight_finish(
    balancer: Balancer, redis_client: aioredis.Redis
) -> None:
    async with aiohttp.ClientSession(headers=AUTH) as http:
        graph = {"1": {"class_type": "EmptyImage", "inputs": {}}}
        async with http.post(f"{balancer.url}/api/v1/jobs", json={"graph": graph}) as resp:
            assert resp.status == 202
            job_id = (await resp.json())["id"]
        # A long-poll: the worker blocks in an XREAD on the job's log until the wait ends.
        waiting = asyncio.create_task(http.get(f"{balancer.url}/api/v1/jobs/{job_id}?wait=3"))
        await until(lambda: _blocked_reads(redis_client), lambda n: n >= 1,
                    what="the long-poll to block in Redis")  # fmt: skip
        workers = balancer.workers()
        balancer.process.terminate()
        resp = await waiting
        assert resp.status == 200
        assert (await resp.json())["id"] == job_id
        resp.release()
    assert await balancer.process.wait() == 0
    assert not any(alive(pid) for pid in workers)


async def test_the_reaper_runs_once_however_many_workers_contend(
    balancer: Balancer, redis_client: aioredis.Redis
) -> None:
    lease = balancer.keys.leader("reaper")
    token = await until(lambda: redis_client.get(lease), bool, what="a reaper leader")
    # One acquisition for the whole fleet: the other worker stands by.
    assert int(await redis_client.get(balancer.keys.leader_epoch("reaper"))) == 1
    assert await redis_client.get(lease) == token
