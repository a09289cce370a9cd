"""Usage accounting: recorded by the terminal scripts, per owner, workflow and day; every
figure equals the sum of the jobs' own timings (their history and created/finished
stamps), whichever way each job ended."""

from __future__ import annotations

import datetime as dt

from comfyfleet.models.job import Job, JobError, JobErrorCode, OutputRef
from comfyfleet.store.jobs import JobStore
from comfyfleet.store.scripts import DAY_MS, USAGE_KEEP_DAYS
from comfyfleet.store.usage import UsageStore, day_number, today
from tests.support.clock import SteppedClock

from .conftest import LEASE_MS, spec

FLAKY = JobError(code=JobErrorCode.COMFY_UNAVAILABLE, message="down", retryable=True)
A, B = "apikey:aaaaaaaaaaaa", "apikey:bbbbbbbbbbbb"


def gpu_ms(job: Job) -> int:
    return sum(r.ended_ms - r.started_ms for r in job.history)


def queue_ms(job: Job) -> int:
    assert job.finished_ms is not None
    return job.finished_ms - job.created_ms - gpu_ms(job)


async def test_usage_is_the_sum_of_the_jobs_own_timings(
    store: JobStore, clock: SteppedClock
) -> None:
    ended: list[Job] = []
    # A: a success after one retried attempt, with two outputs; a success in one go.
    first, _ = await store.enqueue(spec(owner=A, workflow="solid", max_attempts=3))
    await clock.step(250)
    await store.claim("n", lease_ms=LEASE_MS)
    await clock.step(1_300)
    await store.fail(first.id, "n", FLAKY)
    await clock.step(400)
    await store.claim("n", lease_ms=LEASE_MS)
    await clock.step(2_100)
    outputs = [OutputRef(index=i, filename=f"{i}.png", size=1000 + i) for i in range(2)]
    ended.append(await store.complete(first.id, "n", outputs))
    second, _ = await store.enqueue(spec(owner=A, workflow="solid"))
    await store.claim("n", lease_ms=LEASE_MS)
    await clock.step(700)
    ended.append(await store.complete(second.id, "n", [OutputRef(index=0, filename="x",
                                                                  size=77)]))  # fmt: skip
    # B: one cancelled while queued, one that failed for good while running.
    third, _ = await store.enqueue(spec(owner=B))
    await clock.step(90)
    ended.append(await store.cancel(third.id))
    fourth, _ = await store.enqueue(spec(owner=B, max_attempts=1))
    await store.claim("n", lease_ms=LEASE_MS)
    await clock.step(600)
    ended.append(await store.fail(fourth.id, "n", FLAKY))

    day = today(clock.now_ms())
    report = await UsageStore(store.redis, store.keys).report(day, day, None)
    got = {(u.owner, u.workflow): u for u in report.totals}
    assert set(got) == {(A, "solid"), (B, "_graph")}
    for (owner, _), usage in got.items():
        jobs = [j for j in ended if j.owner == owner]
        assert usage.gpu_seconds == sum(gpu_ms(j) for j in jobs) / 1000
        assert usage.queue_seconds == sum(queue_ms(j) for j in jobs) / 1000
        assert usage.output_bytes == sum(o.size for j in jobs for o in j.outputs)
        assert usage.jobs == {s: sum(j.status.value == s for j in jobs)
                              for s in ("succeeded", "failed", "cancelled")}  # fmt: skip
    assert got[(A, "solid")].gpu_seconds == (1_300 + 2_100 + 700) / 1000
    assert got[(A, "solid")].queue_seconds == (250 + 400) / 1000
    assert got[(B, "_graph")].queue_seconds == 90 / 1000
    assert [d.day for d in report.days] == [day.isoformat()] * 2
    # One owner's figures only, when asked.
    only_b = await UsageStore(store.redis, store.keys).report(day, day, B)
    assert [(u.owner, u.jobs["failed"]) for u in only_b.totals] == [(B, 1)]
    assert (await UsageStore(store.redis, store.keys).totals())[(A, "output_bytes")] == 2078


async def test_a_day_is_kept_90_days_and_counted_on_the_day_the_job_ended(
    store: JobStore, clock: SteppedClock
) -> None:
    job, _ = await store.enqueue(spec(owner=A))
    # Ends just after midnight UTC: it counts on the new day.
    await clock.step(DAY_MS - clock.now_ms() % DAY_MS + 5)
    await store.cancel(job.id)
    day = today(clock.now_ms())
    yesterday = day - dt.timedelta(days=1)
    report = await UsageStore(store.redis, store.keys).report(yesterday, day, None)
    assert [(d.day, d.jobs["cancelled"]) for d in report.days] == [(day.isoformat(), 1)]
    ttl = await store.redis.pttl(store.keys.usage_day(day_number(day)))
    # Set relative to the fleet's clock; Redis counts it down in real time meanwhile.
    kept = DAY_MS - 5 + USAGE_KEEP_DAYS * DAY_MS
    assert kept - 60_000 < ttl <= kept
