"""Fair share through the real scripts, on the fleet's stepped clock: simulated nodes claim,
run each job for its owner's job time and complete it, all as Redis sees it. Times below
are the fleet's own (the clock the scripts stamp), so the bounds are exact, not timing."""

from __future__ import annotations

import heapq
from collections import defaultdict
from dataclasses import dataclass, field

from comfyfleet.models.job import Job, JobStatus
from comfyfleet.store.jobs import JobStore
from comfyfleet.store.tenants import TenantStore
from tests.support.clock import SteppedClock

from .conftest import spec

LEASE_MS = 3_600_000
A, B = "apikey:a", "apikey:b"


@dataclass
class Fleet:
    """`nodes` simulated nodes taking one job at a time from `store`."""

    store: JobStore
    clock: SteppedClock
    nodes: int
    job_ms: dict[str, int]  # owner -> how long each of its jobs runs (ms)
    running: list[tuple[int, str, str]] = field(default_factory=list)  # (end, job, node)
    done: list[Job] = field(default_factory=list)

    def busy(self) -> set[str]:
        return {node for _, _, node in self.running}

    async def fill(self) -> None:
        for n in range(self.nodes):
            node = f"n{n}"
            if node in self.busy():
                continue
            got = await self.store.claim(node, lease_ms=LEASE_MS)
            for job in got:
                end = self.clock.now_ms() + self.job_ms[job.owner]
                heapq.heappush(self.running, (end, job.id, node))

    async def advance(self, until_ms: int | None = None) -> None:
        """To the next job end (or `until_ms` if sooner): complete what ends, refill."""
        target = self.running[0][0] if self.running else until_ms
        if until_ms is not None and target is not None:
            target = min(target, until_ms)
        assert target is not None, "nothing running and no time to go to"
        await self.clock.step(target - self.clock.now_ms())
        while self.running and self.running[0][0] <= self.clock.now_ms():
            _, job_id, node = heapq.heappop(self.running)
            self.done.append(await self.store.complete(job_id, node, []))
        await self.fill()


async def flood(store: JobStore, owner: str, count: int) -> None:
    for _ in range(count):
        await store.enqueue(spec(owner=owner))


async def test_a_late_tenant_starts_within_two_job_times_of_a_flood(
    store: JobStore, clock: SteppedClock
) -> None:
    job_ms = 1_000
    fleet = Fleet(store, clock, nodes=3, job_ms={A: job_ms, B: job_ms})
    await flood(store, A, 2_000)
    await fleet.fill()
    b_jobs: list[str] = []
    for _k in range(20):
        # B submits now and then (every 1.7 job-times), while A's flood is far from done.
        submit_at = clock.now_ms() + 1_700
        while clock.now_ms() < submit_at:
            await fleet.advance(until_ms=submit_at)
        b_jobs.append((await store.enqueue(spec(owner=B)))[0].id)
        await fleet.fill()
    while True:
        jobs = [await store.get(job_id) for job_id in b_jobs]
        if all(j is not None and j.status is not JobStatus.QUEUED for j in jobs):
            break
        await fleet.advance()
    waits = [j.started_ms - j.created_ms for j in jobs if j and j.started_ms is not None]
    assert len(waits) == 20
    assert max(waits) <= 2 * job_ms, waits
    assert await store.queue_depth() > 1_900  # A's flood was still there throughout


async def gpu_share(
    store: JobStore, clock: SteppedClock, weights: dict[str, int], job_ms: dict[str, int]
) -> dict[str, float]:
    tenants = TenantStore(store.redis, store.keys)
    for owner, weight in weights.items():
        await tenants.configure(owner, weight=weight)
    for owner in weights:
        await flood(store, owner, 300)
    fleet = Fleet(store, clock, nodes=3, job_ms=job_ms)
    await fleet.fill()
    start = clock.now_ms()
    window = (start + 10_000, start + 70_000)  # after the cost estimate settles
    while clock.now_ms() < window[1]:
        await fleet.advance(until_ms=window[1])
    used: dict[str, float] = defaultdict(float)
    for job in fleet.done:
        assert job.started_ms is not None
        assert job.finished_ms is not None
        overlap = min(job.finished_ms, window[1]) - max(job.started_ms, window[0])
        used[job.owner] += max(0, overlap)
    # Both still had work queued at the end of the window, so both competed throughout.
    for owner in weights:
        assert (await tenants.get(owner)).queued > 0
    total = sum(used.values())
    return {owner: used[owner] / total for owner in weights}


async def test_gpu_time_follows_equal_weights_whatever_the_job_lengths(
    store: JobStore, clock: SteppedClock
) -> None:
    # B's jobs run 3x as long as A's: equal GPU time means A runs 3x as many jobs.
    share = await gpu_share(store, clock, {A: 1, B: 1}, {A: 500, B: 1_500})
    assert abs(share[A] - 0.5) <= 0.05, share
    assert abs(share[B] - 0.5) <= 0.05, share


async def test_gpu_time_follows_weights_three_to_one(store: JobStore, clock: SteppedClock) -> None:
    share = await gpu_share(store, clock, {A: 3, B: 1}, {A: 800, B: 800})
    assert abs(share[A] - 0.75) <= 0.075, share
    assert abs(share[B] - 0.25) <= 0.025, share


async def test_an_idle_tenant_earns_no_credit(store: JobStore, clock: SteppedClock) -> None:
    """B ran alone for a long time while A was idle; when A comes, they share from then on
    (A does not get B's past GPU time back first, nor does B)."""
    fleet = Fleet(store, clock, nodes=1, job_ms={A: 1_000, B: 1_000})
    await flood(store, B, 50)
    await fleet.fill()
    for _ in range(30):
        await fleet.advance()
    await flood(store, A, 20)
    first = len(fleet.done)
    for _ in range(20):
        await fleet.advance()
    owners = [job.owner for job in fleet.done[first + 1 :]]
    # Alternating, not 20 of A first: A starts at the system virtual time.
    assert 8 <= owners.count(A) <= 12, owners
