"""The fleet-wide histograms and ended counts are observed inside the job scripts, once
per transition, whoever makes it (a node completing, the reaper taking a lost node's job,
a cancel), with the store's clock (ms in, seconds out)."""

from __future__ import annotations

from comfyfleet.models.node import NodeInfo
from comfyfleet.store import histograms
from comfyfleet.store.jobs import JobStore
from comfyfleet.store.nodes import NodeRegistry
from tests.support.clock import SteppedClock

from .conftest import LEASE_MS, spec


def cell(series: list[histograms.Series], labels: tuple[str, ...]) -> histograms.Series:
    (found,) = [s for s in series if s.labels == labels]
    return found


async def test_a_job_is_observed_at_claim_and_end(store: JobStore, clock: SteppedClock) -> None:
    job, _ = await store.enqueue(spec(workflow="solid", pool="gpu"))
    await clock.step(1_500)
    await store.claim("n", lease_ms=LEASE_MS, pools=["gpu"])
    await clock.step(3_000)
    await store.complete(job.id, "n", [])
    got = await histograms.read(store.redis, store.keys)
    labels = ("solid", "gpu")
    wait, run, e2e = (cell(got[k], labels) for k in ("queue_wait", "run", "e2e"))
    bounds = histograms.BY_KEY
    # 1.5 s: first bucket at or above is 2 s; cumulative counts from there on are 1
    first = bounds["queue_wait"].bounds.index(2)
    assert wait.cumulative[first - 1] == 0
    assert wait.cumulative[first] == 1
    assert wait.sum == 1.5
    assert run.sum == 3.0
    assert e2e.sum == 4.5
    attempts = cell(got["attempts"], labels)
    assert attempts.cumulative[bounds["attempts"].bounds.index(1)] == 1
    assert attempts.cumulative[bounds["attempts"].bounds.index(0)] == 0
    ended = await histograms.ended(store.redis, store.keys)
    assert ended == {("solid", "gpu", "succeeded"): 1}


async def test_ends_by_the_reaper_and_by_cancel_are_counted_once(
    store: JobStore, clock: SteppedClock
) -> None:
    await NodeRegistry(store.redis, store.keys, clock).heartbeat(NodeInfo(node_id="gone"))
    await store.enqueue(spec(max_attempts=1))
    queued, _ = await store.enqueue(spec())
    await store.claim("gone", lease_ms=LEASE_MS, capacity=1)
    await clock.step(10_000)
    marked, taken = await store.reap_node("gone", lost_after_ms=6_000)
    assert marked
    assert len(taken) == 1
    await store.cancel(queued.id)
    ended = await histograms.ended(store.redis, store.keys)
    assert ended == {("_graph", "default", "failed"): 1, ("_graph", "default", "cancelled"): 1}
    got = await histograms.read(store.redis, store.keys)
    assert cell(got["e2e"], ("_graph", "default")).count == 2
    assert cell(got["run"], ("_graph", "default")).count == 1  # the cancelled one never ran
    assert cell(got["queue_wait"], ("_graph", "default")).count == 1
