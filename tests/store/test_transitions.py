"""The state table is the truth: drive every job script down every path it has and check
that each change of status it makes is one TRANSITIONS allows -- and that every entry of
the table is made by some script (an entry no script makes is a lie about the lifecycle)."""

from __future__ import annotations

import itertools
from collections.abc import Awaitable, Callable
from typing import Any

from comfyfleet.clock import FrozenClock
from comfyfleet.models.job import TRANSITIONS, JobError, JobErrorCode, JobStatus
from comfyfleet.store.jobs import JobStore
from comfyfleet.store.scripts import JOB_SCRIPT_ARGS
from tests.store.conftest import LEASE_MS, spec

FLAKY = JobError(code=JobErrorCode.COMFY_LOST, message="restarted", retryable=True)
BROKEN = JobError(code=JobErrorCode.EXECUTION_ERROR, message="bad graph")

Transition = tuple[JobStatus | None, JobStatus]


class Recorder:
    """Runs store calls, noting for each script the status changes it made to one job."""

    def __init__(self, store: JobStore) -> None:
        self.store = store
        self.made: dict[str, set[Transition]] = {name: set() for name in JOB_SCRIPT_ARGS}

    async def status(self, job_id: str) -> JobStatus | None:
        job = await self.store.get(job_id)
        return None if job is None else job.status

    async def run(self, script: str, ids: list[str], call: Callable[[], Awaitable[Any]]) -> Any:
        before = {job_id: await self.status(job_id) for job_id in ids}
        result = await call()
        for job_id in ids:
            after = await self.status(job_id)
            assert after is not None
            if after is not before[job_id]:
                self.made[script].add((before[job_id], after))
        return result

    async def enqueue(self, **kw: Any) -> str:
        job, _ = await self.store.enqueue(spec(**kw))
        self.made["enqueue"].add((None, JobStatus.QUEUED))
        return job.id

    async def claim(self, job_id: str, node: str = "n1", pool: str = "default") -> None:
        jobs = await self.run(
            "claim", [job_id], lambda: self.store.claim(node, pools=[pool], lease_ms=LEASE_MS)
        )
        assert [job.id for job in jobs] == [job_id]


async def _retry_then_cancel(rec: Recorder, store: JobStore, backoff_ms: int) -> None:
    """fail: running -> queued (at once, or after a backoff); cancel: queued -> cancelled."""
    job_id = await rec.enqueue()
    await rec.claim(job_id)
    await rec.run("fail", [job_id], lambda: store.fail(job_id, "n1", FLAKY, backoff_ms=backoff_ms))
    await rec.run("cancel", [job_id], lambda: store.cancel(job_id))


async def _drive_owner_scripts(rec: Recorder, store: JobStore) -> None:
    # complete: running -> succeeded
    job_id = await rec.enqueue()
    await rec.claim(job_id)
    await rec.run("renew", [job_id], lambda: store.renew(job_id, "n1", lease_ms=LEASE_MS))
    await rec.run("complete", [job_id], lambda: store.complete(job_id, "n1", []))
    # fail: running -> queued (at once, and after a backoff), -> failed, -> cancelled
    for backoff_ms in (0, 1_000):
        await _retry_then_cancel(rec, store, backoff_ms)
    job_id = await rec.enqueue()
    await rec.claim(job_id)
    await rec.run("fail", [job_id], lambda: store.fail(job_id, "n1", BROKEN))
    job_id = await rec.enqueue()
    await rec.claim(job_id)
    await rec.run("cancel", [job_id], lambda: store.cancel(job_id))  # running: requested only
    await rec.run("fail", [job_id], lambda: store.fail(job_id, "n1", FLAKY))
    # release: running -> queued, and -> cancelled when a cancel was requested
    job_id = await rec.enqueue()
    await rec.claim(job_id)
    await rec.run("release", [job_id], lambda: store.release(job_id, "n1"))
    await rec.claim(job_id)
    await rec.run("cancel", [job_id], lambda: store.cancel(job_id))
    await rec.run("release", [job_id], lambda: store.release(job_id, "n1"))
    # finish_cancelled: running -> cancelled
    job_id = await rec.enqueue()
    await rec.claim(job_id)
    await rec.run("cancel", [job_id], lambda: store.cancel(job_id))
    await rec.run("finish_cancelled", [job_id], lambda: store.finish_cancelled(job_id, "n1"))


async def _drive_reaper_scripts(rec: Recorder, store: JobStore, clock: FrozenClock) -> None:
    # requeue_expired: running -> queued, -> failed (last attempt), -> cancelled (requested)
    requeued = await rec.enqueue(max_attempts=2)
    last = await rec.enqueue(max_attempts=1)
    cancelled = await rec.enqueue()
    for job_id in (requeued, last, cancelled):
        await rec.claim(job_id)
    await rec.run("cancel", [cancelled], lambda: store.cancel(cancelled))
    await clock.step(LEASE_MS)
    ids = [requeued, last, cancelled]
    handled = await rec.run("requeue_expired", ids, lambda: store.requeue_expired())
    assert sorted(handled) == sorted(ids)
    # reap_node: the same three ends for the jobs of a lost node
    requeued = await rec.enqueue(max_attempts=2, pool="reap")
    last = await rec.enqueue(max_attempts=1, pool="reap")
    cancelled = await rec.enqueue(pool="reap")
    for job_id in (requeued, last, cancelled):
        await rec.claim(job_id, node="gone", pool="reap")
    await rec.run("cancel", [cancelled], lambda: store.cancel(cancelled))
    ids = [requeued, last, cancelled]
    marked, taken = await rec.run(
        "reap_node", ids, lambda: store.reap_node("gone", lost_after_ms=0)
    )
    assert marked
    assert sorted(taken) == sorted(ids)


async def test_every_transition_a_script_makes_is_in_the_table(
    store: JobStore, clock: FrozenClock
) -> None:
    rec = Recorder(store)
    await _drive_owner_scripts(rec, store)
    await _drive_reaper_scripts(rec, store, clock)
    allowed = {(old, new) for old, targets in TRANSITIONS.items() for new in targets}
    made = set().union(*rec.made.values())
    for script, transitions in rec.made.items():
        outside = {t for t in transitions if t[0] is not None and t not in allowed}
        assert not outside, f"{script} made transitions outside the table: {outside}"
    # Every entry of the table is made by some script: the table is the whole lifecycle.
    assert allowed == {t for t in made if t[0] is not None}
    # And each script was driven: a script added later must be added here too.
    assert all(rec.made[name] for name in JOB_SCRIPT_ARGS if name not in ("renew",))


async def test_the_state_events_of_a_job_follow_the_table(
    store: JobStore, clock: FrozenClock
) -> None:
    rec = Recorder(store)
    await _drive_owner_scripts(rec, store)
    await _drive_reaper_scripts(rec, store, clock)
    jobs, _ = await store.list_jobs(limit=100)
    assert len(jobs) == 13  # every job the drive above made
    for job in jobs:
        statuses = [
            JobStatus(event["status"])
            for _, event in await store.events(job.id, count=100)
            if event["type"] == "state"
        ]
        assert statuses[0] is JobStatus.QUEUED
        for old, new in itertools.pairwise(statuses):
            assert new in TRANSITIONS[old], (job.id, statuses)
