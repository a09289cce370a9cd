"""The claim loop: take jobs while there is capacity, run each in its own task, hand back
what cannot be finished when draining.

Capacity is 1 + prefetch: the job ComfyUI is running plus the ones queued inside it, so the
GPU never waits for a round trip to Redis between jobs.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import structlog

from comfyfleet.errors import StoreError
from comfyfleet.models.job import DEFAULT_OWNER, DEFAULT_POOL, Job
from comfyfleet.models.retry import Backoff
from comfyfleet.node.leases import LeaseKeeper
from comfyfleet.store.jobs import JobStore
from comfyfleet.tasks import Pacer, stop

log = structlog.get_logger(__name__)

DEFAULT_LEASE_MS = 30_000
# Upper bound on waiting for work when no wake-up hint arrives (a missed pub/sub message).
IDLE_WAIT_S = 2.0
# Pause after a failed claim, doubling while Redis keeps failing, up to the cap.
CLAIM_BACKOFF = Backoff(base_ms=250, cap_ms=5_000, jitter=False)


@dataclass
class JobControl:
    """Signals from outside to a running job, and what the runner tells the node about it."""

    cancelled: asyncio.Event = field(default_factory=asyncio.Event)
    lease_lost: asyncio.Event = field(default_factory=asyncio.Event)
    # Set when the node is stopping (drain) or its ComfyUI hung behind another prompt: the
    # job goes back to the queue, untried if its prompt never started.
    handback: asyncio.Event = field(default_factory=asyncio.Event)
    # Set by the watchdog when this job's prompt is the one ComfyUI hangs on.
    hung: asyncio.Event = field(default_factory=asyncio.Event)
    # Set by the runner when the job's own time limit ran out.
    timed_out: asyncio.Event = field(default_factory=asyncio.Event)
    # Set by the lease keeper when Redis has not confirmed the lease for half of it.
    fenced: asyncio.Event = field(default_factory=asyncio.Event)
    # A job this node held before it restarted: follow its prompt, do not submit it again.
    adopted: bool = False
    # The ComfyUI prompt id of the current attempt, once the runner knows it.
    prompt_id: str | None = None
    # The attempt's number (the job's `attempts` when claimed): its ComfyUI lines go there.
    attempt: int = 0
    # Who submitted the job (a Principal label): the node's API shows it to that owner only.
    owner: str = DEFAULT_OWNER

    def stop_events(self) -> list[asyncio.Event]:
        """Each event that means: take the prompt out of ComfyUI now."""
        return [
            self.cancelled, self.lease_lost, self.fenced, self.handback, self.hung, self.timed_out
        ]  # fmt: skip

    @property
    def stop_requested(self) -> bool:
        return any(event.is_set() for event in self.stop_events())


class JobRunner(Protocol):
    async def __call__(self, job: Job, control: JobControl) -> None:
        """Run one claimed job to its end, writing the outcome to the store."""


class Worker:
    def __init__(
        self,
        *,
        node_id: str,
        store: JobStore,
        runner: JobRunner,
        capacity: int,
        can_claim: Callable[[], bool],
        pools: Sequence[str] = (DEFAULT_POOL,),
        lease_ms: int = DEFAULT_LEASE_MS,
    ) -> None:
        self.node_id = node_id
        self.store = store
        self.runner = runner
        self.capacity = capacity
        self.can_claim = can_claim
        self.pools = tuple(pools)
        self.lease_ms = lease_ms
        self.draining = False
        # The inventory digest whose coverage is recorded (node/monitor.py cover_classes):
        # claims take jobs of the capability classes it covers. None: jobs queued without
        # a capability only.
        self.digest: str | None = None
        # Set when a lease could not be confirmed for half its length (see LeaseKeeper):
        # nothing is claimed until a heartbeat reaches Redis again (`store_reached`).
        self.fenced = False
        self.fenced_total = 0  # attempts stopped by fencing, since start
        self.tasks: dict[str, asyncio.Task[None]] = {}
        self.controls: dict[str, JobControl] = {}
        self._changed = asyncio.Event()

    @property
    def free(self) -> int:
        return max(0, self.capacity - len(self.tasks))

    def poke(self) -> None:
        """Wake the claim loop: capacity, health or drain state changed."""
        self._changed.set()

    async def run_once(self) -> list[Job]:
        """Claim as many jobs as there is room for and start them. For tests, one step."""
        if self.draining or self.fenced or not self.free or not self.can_claim():
            return []
        jobs = await self.store.claim(
            self.node_id,
            pools=self.pools,
            capacity=self.free,
            lease_ms=self.lease_ms,
            digest=self.digest,
        )
        for job in jobs:
            self._start(job)
        return jobs

    def adopt(self, job: Job) -> None:
        """Take over a job this node's previous life held (same node id): its prompt may
        still be queued, running or finished in ComfyUI, so the runner follows it."""
        self._start(job, adopted=True)

    def _start(self, job: Job, *, adopted: bool = False) -> None:
        control = JobControl(adopted=adopted, attempt=job.attempts, owner=job.owner)
        self.controls[job.id] = control
        task = asyncio.create_task(self._run(job, control), name=f"job-{job.id}")
        self.tasks[job.id] = task
        log.info("job_adopted" if adopted else "job_claimed", job_id=job.id, attempt=job.attempts)

    async def _run(self, job: Job, control: JobControl) -> None:
        def fence() -> None:
            control.fenced.set()
            self.fenced, self.fenced_total = True, self.fenced_total + 1

        keeper = LeaseKeeper(
            self.store, job.id, self.node_id, lease_ms=self.lease_ms, attempt=job.attempts,
            on_lost=control.lease_lost.set, on_fenced=fence,
        )  # fmt: skip
        keeper.start()
        try:
            with structlog.contextvars.bound_contextvars(job_id=job.id):
                await self.runner(job, control)
        except asyncio.CancelledError:
            raise
        except Exception:
            # A bug in one job's runner ends that job's task only, with its traceback: the
            # other jobs keep their runners, and this job's lease lapses, so the reaper
            # gives it back (counted). Nothing retries the crash itself.
            log.exception("job_runner_crashed", job_id=job.id)
        finally:
            await keeper.stop()
            self.tasks.pop(job.id, None)
            self.controls.pop(job.id, None)
            self.poke()

    def store_reached(self) -> None:
        """A write reached Redis (a heartbeat): claiming may resume after fencing."""
        if self.fenced:
            log.info("fencing_lifted")
            self.fenced = False
            self.poke()

    def cancel(self, job_id: str) -> bool:
        """A client cancelled a job this node holds: tell its runner. False if not held."""
        control = self.controls.get(job_id)
        if control is None:
            return False
        control.cancelled.set()
        return True

    async def run(self) -> None:
        """Claim forever; returns only when cancelled. While Redis fails, back off
        (doubling, capped) and carry on when it answers again."""
        pacer = Pacer(CLAIM_BACKOFF)
        while True:
            asked = self.free
            try:
                claimed = await self.run_once()
                pacer.reset()
            except StoreError as exc:  # Redis down or restarting
                log.warning("claim_failed", error=exc.detail, retry_in_s=pacer.delay_s)
                await pacer.sleep()
                continue
            # A claim that came back short found the queues empty: wait for a hint (one that
            # came meanwhile is remembered) instead of asking again at once, which would
            # delay the jobs just started by a round trip.
            if claimed and len(claimed) == asked and self.free:
                continue
            await self._wait_for_change()

    async def _wait_for_change(self) -> None:
        self._changed.clear()
        changed = asyncio.create_task(self._changed.wait())
        waits: list[asyncio.Task[Any]] = [changed]
        if self.free and not self.draining and self.can_claim():
            waits.append(asyncio.create_task(self.store.wait_for_work(IDLE_WAIT_S)))
        try:
            await asyncio.wait(waits, timeout=IDLE_WAIT_S, return_when=asyncio.FIRST_COMPLETED)
        finally:
            # A Redis error in a helper only ends the idle wait: nothing to report.
            await stop(*waits, report=False)

    async def drain(self, grace_s: float) -> None:
        """Stop claiming; let held jobs finish for `grace_s`, then hand the rest back."""
        self.draining = True
        self.poke()
        pending = list(self.tasks.values())
        if pending:
            await asyncio.wait(pending, timeout=grace_s)
        for control in self.controls.values():
            control.handback.set()
        rest = list(self.tasks.values())
        if rest:
            await asyncio.wait(rest, timeout=max(5.0, grace_s))
        await stop(*self.tasks.values())

    def resume(self) -> None:
        self.draining = False
        self.poke()
