"""A node's failure classes, forced on a real stand-in and stepped: a hung ComfyUI, a job's
time limit, a ComfyUI restart mid-job, cancel of pending and running prompts, drain, and a
node restarted with the same id. Nothing waits on a sleep: faults are switched on and off
through the stand-in, and the node is stepped (`run_once`, `check_once`)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from comfyfleet.models.job import Job, JobStatus
from comfyfleet.node.app import _recover
from comfyfleet.node.runner import prompt_id_for
from comfyfleet.node.worker import Worker
from tests.reliability.rig import HANG_S, Rig, make_worker, stop_worker
from tests.support.waiting import until


def codes(job: Job) -> list[str]:
    return [r.error.code if r.error else r.outcome for r in job.history]


async def _two_held_one_stalled(rig: Rig) -> tuple[Job, Job]:
    """Two jobs held: the first returned runs inside ComfyUI and stalls after its first
    node; the second waits behind it in ComfyUI's queue."""
    rig.sim.faults.stall_after_nodes = 1
    first, second = await rig.submit(1), await rig.submit(2)
    jobs = await rig.worker.run_once()
    assert len(jobs) == 2
    await rig.stalled()
    running = await rig.comfy.queue()
    held = {prompt_id_for(j): j for j in jobs}
    (now_running,) = [held[item.prompt_id] for item in running.running]
    other = first if now_running.id == second.id else second
    return now_running, other


async def _step_watch_until_hung(rig: Rig) -> None:
    async def step() -> str | None:
        rig.watch_clock.advance(int(HANG_S * 500))  # half the hang bound per look
        await rig.watch.check_once()
        return rig.status.comfy_hung

    await until(step, lambda hung: hung is not None, what="the watchdog to call ComfyUI hung")


async def test_hung_comfyui_fails_the_running_job_hands_back_the_rest(rig: Rig) -> None:
    a, b = await _two_held_one_stalled(rig)
    await _step_watch_until_hung(rig)
    assert not rig.status.can_claim
    a_now = await rig.settled(a.id)
    b_now = await rig.settled(b.id)
    assert (a_now.status, a_now.attempts, codes(a_now)) == (JobStatus.QUEUED, 1, ["comfy_hung"])
    assert a_now.avoid_node == "rig"
    assert (b_now.status, b_now.attempts, b_now.history) == (JobStatus.QUEUED, 0, [])
    assert await rig.worker.run_once() == []  # unhealthy: claims nothing
    # ComfyUI moves again: the interrupted prompt leaves, the node is healthy again.
    rig.sim.faults.resume()
    await until(lambda: _look(rig), lambda hung: hung is None, what="the node to see ComfyUI move")
    assert rig.status.can_claim
    assert len(await rig.worker.run_once()) == 2
    a_end = await rig.settled(a.id, lambda j: j.is_terminal)
    b_end = await rig.settled(b.id, lambda j: j.is_terminal)
    assert (a_end.status, codes(a_end)) == (JobStatus.SUCCEEDED, ["comfy_hung", "succeeded"])
    assert (b_end.status, b_end.attempts) == (JobStatus.SUCCEEDED, 1)
    # Every execution inside ComfyUI belongs to a counted attempt.
    assert rig.executions(a_end) == 2
    assert rig.executions(b_end) == 1


async def _look(rig: Rig) -> str | None:
    await rig.watch.check_once()
    return rig.status.comfy_hung


async def test_job_time_limit_stops_the_prompt_and_fails_the_attempt(rig: Rig) -> None:
    rig.sim.faults.stall_after_nodes = 1
    job = await rig.submit(3, timeout_ms=300, max_attempts=1)
    await rig.worker.run_once()
    done = await rig.settled(job.id)
    assert done.status is JobStatus.FAILED
    assert done.error is not None
    assert (done.error.code, done.error.retryable) == ("timeout", True)


async def test_comfyui_restart_mid_job_is_lost_then_retried(rig: Rig) -> None:
    rig.sim.faults.stall_after_nodes = 1
    job = await rig.submit(4)
    await rig.worker.run_once()
    await rig.stalled()
    await rig.sim.restart()  # queue and history gone, like a restarted ComfyUI
    back = await rig.settled(job.id)
    assert (back.status, codes(back)) == (JobStatus.QUEUED, ["comfy_lost"])
    await rig.worker.run_once()
    done = await rig.settled(job.id, lambda j: j.is_terminal)
    assert (done.status, done.attempts) == (JobStatus.SUCCEEDED, 2)


async def test_cancel_deletes_a_pending_prompt_and_interrupts_a_running_one(rig: Rig) -> None:
    a, b = await _two_held_one_stalled(rig)
    for job in (b, a):
        await rig.store.cancel(job.id)
        assert rig.worker.cancel(job.id)  # what the node's cancel listener does
    b_end = await rig.settled(b.id)
    a_end = await rig.settled(a.id)
    assert (a_end.status, b_end.status) == (JobStatus.CANCELLED, JobStatus.CANCELLED)
    assert rig.executions(b_end) == 0  # deleted before it ran
    rig.sim.faults.resume()
    entry = await until(
        _history_of(rig, a_end), lambda e: e is not None, what="A's prompt to end in ComfyUI"
    )
    assert entry["status"]["status_str"] == "error"  # interrupted, not run to the end
    assert any(m[0] == "execution_interrupted" for m in entry["status"]["messages"])


def _history_of(rig: Rig, job: Job) -> Callable[[], Awaitable[dict[str, Any] | None]]:
    async def probe() -> dict[str, Any] | None:
        entry: dict[str, Any] | None = rig.sim.history().get(prompt_id_for(job))
        return entry

    return probe


async def test_drain_hands_back_untried_jobs_and_counts_stopped_ones(rig: Rig) -> None:
    a, b = await _two_held_one_stalled(rig)
    await rig.worker.drain(grace_s=0.0)
    a_end, b_end = await rig.get(a.id), await rig.get(b.id)
    assert (b_end.status, b_end.attempts, b_end.history) == (JobStatus.QUEUED, 0, [])
    assert (a_end.status, a_end.attempts, codes(a_end)) == (JobStatus.QUEUED, 1, ["handed_back"])


async def test_restarted_node_follows_the_prompt_its_last_life_submitted(rig: Rig) -> None:
    rig.sim.faults.stall_after_nodes = 1
    job = await rig.submit(5)
    await rig.worker.run_once()
    await rig.stalled()
    await stop_worker(rig.worker)  # the node dies without a word
    again = make_worker(rig.store, rig.comfy, rig.status)
    await _recover(rig.store, again)
    assert list(again.controls) == [job.id]
    assert again.controls[job.id].adopted
    rig.sim.faults.resume()
    done = await _settled_on(rig, again, job.id)
    assert (done.status, done.attempts, codes(done)) == (JobStatus.SUCCEEDED, 1, ["succeeded"])
    assert rig.executions(done) == 1  # followed, not run again


async def test_restarted_node_whose_prompt_vanished_counts_the_attempt(rig: Rig) -> None:
    job = await rig.submit(6)
    await rig.store.claim("rig", lease_ms=30_000)  # claimed, then died before submitting
    again = make_worker(rig.store, rig.comfy, rig.status)
    await _recover(rig.store, again)
    back = await _settled_on(rig, again, job.id)
    assert (back.status, back.attempts, codes(back)) == (JobStatus.QUEUED, 1, ["node_restarted"])


async def _settled_on(rig: Rig, worker: Worker, job_id: str) -> Job:
    return await until(
        lambda: rig.get(job_id),
        lambda j: j.status is not JobStatus.RUNNING and job_id not in worker.tasks,
        timeout_s=20,
        what=f"job {job_id} to settle",
    )
