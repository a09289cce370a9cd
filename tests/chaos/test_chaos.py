"""N jobs over K nodes, real processes on loopback, while every fault kind is injected several
times (see faults.py). At the end: every accepted job ended exactly once, every succeeded job
has its outputs, no job ran in ComfyUI more often than its attempts record, nothing lost."""

from __future__ import annotations

import asyncio
import random
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import aiohttp
import pytest

from comfyfleet.cli.fleet import Fleet, FleetSpec
from comfyfleet.config import RedisConfig
from comfyfleet.store.jobs import JobStore
from comfyfleet.web.auth import basic_auth_header
from tests.chaos.conftest import ChaosSize
from tests.chaos.faults import FULL_S, LEASE_MS, Injector
from tests.chaos.load import (
    FENCE_SLACK_MS,
    check,
    clock_faults,
    outputs_present,
    submit_all,
    wait_all_ended,
)
from tests.support.proxy import PartitionProxy

USER, PASSWORD = "chaos", "chaos-" + uuid.uuid4().hex
HANG_S = 3.0
# Simulated time per executed node (ms): long enough that faults land on running jobs.
NODE_MS = 80.0

pytestmark = pytest.mark.chaos


@pytest.fixture(scope="module")
def fleet(
    chaos_size: ChaosSize, chaos_store_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Fleet]:
    spec = FleetSpec(
        nodes=chaos_size.nodes, balancer_port=0, first_node_port=0,
        namespace=f"chaos{uuid.uuid4().hex[:8]}", username=USER, password=PASSWORD,
        node_ms=NODE_MS, step_ms=NODE_MS / 4, data_dir=Path(tmp_path_factory.mktemp("chaos")),
        node_args=["--hang-timeout", str(HANG_S), "--retry-base-ms", "200", "--no-retry-jitter",
                   "--lease-ms", str(LEASE_MS)],
        extra_env=chaos_store_env,
    )  # fmt: skip
    with Fleet(spec) as fleet:
        yield fleet


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    auth = {"Authorization": basic_auth_header(USER, PASSWORD)}
    async with aiohttp.ClientSession(
        headers=auth, timeout=aiohttp.ClientTimeout(total=30)
    ) as session:
        yield session


@pytest.fixture
async def store(fleet: Fleet) -> AsyncIterator[JobStore]:
    store = JobStore.from_config(RedisConfig(url=fleet.redis_url, namespace=fleet.spec.namespace))
    yield store
    await store.close()


async def _behind_proxies(fleet: Fleet, injector: Injector) -> None:
    """Put a proxy the test can cut between each node and Redis (nodes restart once)."""
    address = fleet.redis_url.split("//", 1)[1].split("/", 1)[0]
    host, port = address.rsplit("@", 1)[-1].rsplit(":", 1)
    for proc in fleet.nodes:
        proxy = PartitionProxy(host, int(port))
        await proxy.start()
        injector.proxies.append(proxy)
        proc.kill()
        proc.env = {
            **proc.env,
            "REDIS_URL": fleet.redis_url.replace(address, f"127.0.0.1:{proxy.port}"),
        }
        proc.start()
        await asyncio.to_thread(proc.wait_healthy)


@pytest.mark.timeout(1800)
async def test_nothing_is_lost_or_doubled_under_faults(
    fleet: Fleet, http: aiohttp.ClientSession, store: JobStore, chaos_size: ChaosSize
) -> None:
    rng = random.Random(chaos_size.seed)
    injector = Injector(
        fleet,
        http,
        random.Random(chaos_size.seed + 1),
        hang_s=HANG_S,
        gap_s=(0.5, 1.5),
        full_s=FULL_S if chaos_size.name == "full" else 5.0,
    )
    await _behind_proxies(fleet, injector)
    plan = injector.plan(chaos_size.faults_per_kind)
    submitting = asyncio.create_task(
        submit_all(http, fleet.balancer_url, rng, chaos_size.jobs, chaos_size.spread_s,
                   tag=f"chaos-{uuid.uuid4().hex[:6]}")
    )  # fmt: skip
    await injector.run(plan)
    ids = await submitting + injector.extra_ids
    jobs = await wait_all_ended(store, ids, chaos_size.deadline_s)
    for sim in range(len(fleet.sims)):
        await injector.snapshot(sim)
    figures = await check(store, jobs, ids, injector.histories.executions(), injector.records)
    fenced_after_ms = clock_faults(figures, injector, jobs.values())
    for job in jobs.values():
        if job.status.value == "succeeded" and not await outputs_present(
            http, fleet.balancer_url, job
        ):
            figures.missing_outputs.append(job.id)
    print(f"\nchaos ({chaos_size.name}, seed {chaos_size.seed}, {chaos_size.nodes} nodes)\n"
          + figures.report())  # fmt: skip
    assert len(injector.records) == len(plan)
    assert figures.lost == []
    assert figures.duplicated == []
    assert figures.over_executed == []
    assert figures.missing_outputs == []
    # A cut-off node stops its prompts within half a lease (plus one node's run) of the cut.
    assert all(ms <= LEASE_MS / 2 + FENCE_SLACK_MS for ms in fenced_after_ms), fenced_after_ms
    # A skewed clock costs nothing: no attempt on a skewed node was taken back for its lease.
    assert figures.skew_taken_back == [], figures.report()
    for proxy in injector.proxies:
        await proxy.close()
    # Every fault is retryable and jobs have 10 attempts: all of them succeed.
    assert figures.succeeded == figures.jobs, figures.report()
