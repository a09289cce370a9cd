"""Which job a ComfyUI line belongs to (stepped with a frozen clock), and the per-attempt
lists in Redis with their bounds, as the balancer reads them."""

from __future__ import annotations

from comfyfleet.clock import FrozenClock
from comfyfleet.comfy import events as ev
from comfyfleet.models.job import Job, JobError
from comfyfleet.node.app import _explainer
from comfyfleet.node.comfy_lines import ComfyLine
from comfyfleet.node.comfy_logs import ComfyLogs, JobLogWriter
from comfyfleet.store.joblogs import MAX_BYTES, MAX_LINES, JobLogStore
from comfyfleet.store.jobs import JobStore

TRACEBACK = 'Traceback (most recent call last):\n  File "x.py", line 1\nValueError: bad seed'


def _line(clock: FrozenClock, text: str, *, replayed: bool = False) -> ComfyLine:
    return ComfyLine(text=text, level="info", stream="stderr", at=clock.monotonic(),
                     replayed=replayed)  # fmt: skip


async def test_lines_belong_to_the_prompt_running_when_they_came(store: JobStore) -> None:
    clock = FrozenClock()
    jobs = {"p1": ("job-1", 1), "p2": ("job-2", 3)}
    writer = JobLogWriter(JobLogStore(store.redis, store.keys))
    logs = ComfyLogs(job_of=jobs.get, writer=writer, clock=clock)
    logs.emit(_line(clock, "got prompt"))  # before any prompt runs: the node's log only
    logs.on_event(ev.ExecutionStart(prompt_id="p1"))
    clock.advance(100)
    logs.emit(_line(clock, "!!! Exception during processing !!! bad seed"))
    logs.emit(_line(clock, TRACEBACK))
    logs.on_event(ev.ExecutionError(prompt_id="p1"))
    clock.advance(300)
    logs.emit(_line(clock, "Prompt executed in 0.40 seconds"))  # right after its end
    logs.emit(_line(clock, "got prompt"))  # the next prompt's, not this one's
    clock.advance(2000)
    logs.emit(_line(clock, "idle line"))  # long after: nobody's
    logs.on_event(ev.ExecutionStart(prompt_id="p2"))
    logs.emit(_line(clock, "old line from the backlog", replayed=True))
    logs.emit(_line(clock, "sampling"))
    assert logs.exception_of("job-1", 1) == "ValueError: bad seed"
    assert logs.exception_of("job-2", 3) is None
    await writer.write_once()
    read = await JobLogStore(store.redis, store.keys).read("job-1", 1)
    assert [(ln["n"], ln["text"]) for ln in read[1]] == [
        (1, "!!! Exception during processing !!! bad seed"),
        (2, TRACEBACK),
        (3, "Prompt executed in 0.40 seconds"),
    ]
    assert {ln["prompt_id"] for ln in read[1]} == {"p1"}
    later = await JobLogStore(store.redis, store.keys).read("job-2", 3)
    assert [ln["text"] for ln in later[3]] == ["sampling"]
    assert later[1] == later[2] == []


async def test_an_attempts_list_keeps_its_last_lines_within_the_bounds(store: JobStore) -> None:
    logs = JobLogStore(store.redis, store.keys)
    for start in range(0, MAX_LINES + 50, 50):
        await logs.append("job-b", 1, [{"n": n + 1, "text": "x"} for n in range(start, start + 50)])
    [kept] = (await logs.read("job-b", 1)).values()
    assert len(kept) == MAX_LINES
    assert kept[0]["n"] == 51  # the oldest went first
    big = "y" * 10_000
    await logs.append("job-b", 2, [{"n": n, "text": big} for n in range(1, 21)])
    kept = (await logs.read("job-b", 2))[2]
    assert sum(len(ln["text"]) for ln in kept) <= MAX_BYTES
    assert kept[-1]["n"] == 20
    ttl = await store.redis.pttl(store.keys.job_log("job-b", 2))
    assert 0 < ttl <= logs.retention_ms  # goes with the job


def test_a_failed_attempts_error_gains_the_exception_line_comfyui_wrote() -> None:
    clock = FrozenClock()
    logs = ComfyLogs(job_of={"p1": ("job-1", 2)}.get, writer=None, clock=clock)
    logs.on_event(ev.ExecutionStart(prompt_id="p1"))
    logs.emit(_line(clock, TRACEBACK))
    explain = _explainer(logs)
    job = Job(id="job-1", attempts=2)
    lost = JobError(code="comfy_lost", message="ComfyUI lost the prompt (restarted?)")
    assert explain(job, lost).details["comfy_exception"] == "ValueError: bad seed"
    named = JobError(code="execution_error", message="node 2 raised ValueError: bad seed")
    assert explain(job, named) == named  # already says it
    assert explain(Job(id="job-1", attempts=1), lost) == lost  # another attempt's line
