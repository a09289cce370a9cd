"""A finished job's log after the events grace: its stream expires and readers get the log
folded into the job hash -- the same events under the same ids, less the kinds only live
followers use, with the deferred `queued` event and the terminal event's outputs rebuilt
from the hash -- so a cursor taken from the stream resumes in the folded log. The ending
attempt's ComfyUI log lines move into the hash too, when few."""

from __future__ import annotations

import asyncio
from typing import Any

import orjson

from comfyfleet.blobs.naming import attempt_tag, output_key
from comfyfleet.models.job import FOLDED_JOBLOG, FOLDED_LOG, JobError, JobErrorCode, OutputRef
from comfyfleet.store.events import stream_id
from comfyfleet.store.joblogs import JobLogStore
from comfyfleet.store.jobs import JobStore
from tests.support.waiting import until

from .conftest import LEASE_MS, StoreFactory, spec
from .test_compaction import run_an_attempt

# Short enough for a test to wait out (ms).
GRACE_MS = 200
# What the folded log leaves out (docs/design.md "State in Redis").
UNFOLDED = {"submitted", "executing", "executed", "progress", "preview", "lease"}
Entry = tuple[str, dict[str, Any]]


async def log(store: JobStore, job_id: str, after: str = "0") -> list[Entry]:
    return await store.events(job_id, after=after, count=1000)


async def stream_gone(store: JobStore, job_id: str) -> None:
    key = store.keys.events(job_id)
    await until(lambda: store.redis.exists(key), lambda n: n == 0, timeout_s=10,
                what="the stream to expire after the grace")  # fmt: skip


def folded_view(entries: list[Entry]) -> list[Entry]:
    """The log as the fold keeps it: the kinds for live followers and a running attempt's
    lease deadline left out."""
    return [(entry_id, as_folded(event)) for entry_id, event in entries
            if event["type"] not in UNFOLDED]  # fmt: skip


def as_folded(event: dict[str, Any]) -> dict[str, Any]:
    if event["type"] != "state":
        return event
    return {name: value for name, value in event.items() if name != "lease_deadline_ms"}


async def a_finished_job(store: JobStore) -> tuple[str, list[Entry], list[Entry]]:
    """A job that failed once and succeeded on its second attempt, with every kind of
    event; returns its id, its whole log just before the end, and its log just after."""
    job, _ = await store.enqueue(spec(max_attempts=2, metadata={"k": "v"}))
    await store.claim("a", lease_ms=LEASE_MS)
    await run_an_attempt(store, job.id, "a")
    await store.append_event(job.id, "cached", {"nodes": []})
    error = JobError(code=JobErrorCode.COMFY_UNAVAILABLE, message="gone", retryable=True)
    await store.fail(job.id, "a", error)
    await store.claim("b", lease_ms=LEASE_MS)
    await run_an_attempt(store, job.id, "b")
    await store.cancel(job.id)  # a cancel_requested event; the node completes anyway
    full = await log(store, job.id)
    outputs = [OutputRef(index=0, filename="o.png", size=3, sha256="ab", key="k/o.png")]
    await store.complete(job.id, "b", outputs)
    return job.id, full, await log(store, job.id)


async def test_after_the_grace_the_log_reads_from_the_job_with_the_same_ids(
    make_store: StoreFactory,
) -> None:
    store = await make_store(events_grace_ms=GRACE_MS)
    job_id, _, during = await a_finished_job(store)
    job_during = await store.get(job_id)
    await stream_gone(store, job_id)

    after = await log(store, job_id)
    assert after == folded_view(during)
    kinds = [event["type"] for _, event in after]
    assert kinds == ["state", "state", "started", "cached", "state", "state", "started",
                     "cancel_requested", "state"]  # fmt: skip
    assert after[0] == during[0]  # the deferred `queued` event, rebuilt from the hash
    end = after[-1][1]
    assert end["status"] == "succeeded"
    assert end["outputs"][0]["key"] == "k/o.png"  # from the hash's outputs
    raw = await store.redis.hget(store.keys.job(job_id), FOLDED_LOG) or b""
    folded = orjson.loads(raw)
    assert "outputs" not in folded[-1][3]  # ...which the folded log does not repeat
    assert b"lease_deadline_ms" not in raw
    # Ids are kept as offsets from the job's creation: [ms, seq, type, data].
    created = int(after[0][0].split("-")[0])
    assert [f"{created + ms}-{seq}" for ms, seq, *_ in folded] == [i for i, _ in after[1:]]
    assert await store.get(job_id) == job_during
    assert await store.last_event(job_id, "state") == end
    assert await store.last_event(job_id, "progress") is None


async def test_a_cursor_from_the_stream_resumes_in_the_folded_log(
    make_store: StoreFactory,
) -> None:
    store = await make_store(events_grace_ms=GRACE_MS)
    job_id, full, during = await a_finished_job(store)
    await stream_gone(store, job_id)
    expected = folded_view(during)
    # Every id a reader may hold: any event of the live log, kept or not, and a time.
    cursors = [entry_id for entry_id, _ in full + during] + [f"{int(full[3][0][:13]) + 1}"]
    for cursor in cursors:
        resumed = await log(store, job_id, after=cursor)
        assert resumed == [e for e in expected if stream_id(e[0]) > stream_id(cursor)], cursor
    assert await log(store, job_id, after=expected[-1][0]) == []
    first_two = await store.events(job_id, after="0", count=2)
    assert first_two == expected[:2]


async def test_a_log_folded_with_whole_ids_still_reads(make_store: StoreFactory) -> None:
    """Jobs folded before ids were offsets ([id, type, data]) read as they did."""
    store = await make_store(events_grace_ms=GRACE_MS)
    job_id, _, during = await a_finished_job(store)
    await stream_gone(store, job_id)
    key = store.keys.job(job_id)
    now = orjson.loads(await store.redis.hget(key, FOLDED_LOG) or b"")
    created = int(during[0][0].split("-")[0])
    before = [[f"{created + ms}-{seq}", kind, data] for ms, seq, kind, data in now]
    expected = await log(store, job_id)
    await store.redis.hset(key, FOLDED_LOG, orjson.dumps(before))
    assert await log(store, job_id) == expected


async def test_a_job_cancelled_while_queued_folds_to_its_end(make_store: StoreFactory) -> None:
    store = await make_store(events_grace_ms=GRACE_MS)
    job, _ = await store.enqueue(spec())
    await store.cancel(job.id)
    during = await log(store, job.id)
    await stream_gone(store, job.id)
    assert await log(store, job.id) == during
    assert [event["status"] for _, event in during] == ["queued", "cancelled"]


async def test_a_reader_waiting_on_the_stream_is_woken_by_the_end(store: JobStore) -> None:
    job, _ = await store.enqueue(spec())
    await store.claim("a", lease_ms=LEASE_MS)
    cursor = (await log(store, job.id))[-1][0]
    waiting = asyncio.create_task(store.events(job.id, after=cursor, block_ms=10_000))
    await until(lambda: store.redis.client_list(), lambda clients: any(
        c.get("cmd") == "xread" and c.get("flags") == "b" for c in clients),
        timeout_s=10, what="the reader to block")  # fmt: skip
    await store.complete(job.id, "a", [])
    woken = await asyncio.wait_for(waiting, 5)
    assert [event.get("status") for _, event in woken] == ["succeeded"]


async def test_the_finished_hash_repeats_nothing_and_stays_small(store: JobStore) -> None:
    job, _ = await store.enqueue(spec())
    queued = await store.redis.hgetall(store.keys.job(job.id))
    await store.claim("a", lease_ms=LEASE_MS)
    await run_an_attempt(store, job.id, "a")
    await store.complete(job.id, "a", [])
    fields = await store.redis.hgetall(store.keys.job(job.id))
    repeated = {b"id", b"schema_version", b"params", b"metadata", b"cancel_requested",
                b"updated_ms"}  # fmt: skip
    assert repeated.isdisjoint(queued), queued.keys()
    assert repeated.isdisjoint(fields), fields.keys()
    assert await store.redis.object("encoding", store.keys.job(job.id)) == b"listpack"
    finished = await store.get(job.id)
    assert finished is not None
    assert (finished.id, finished.schema_version, finished.cancel_requested) == (job.id, 1, False)
    assert finished.updated_ms == finished.finished_ms
    assert (finished.params, finished.metadata) == ({}, {})


async def test_a_short_log_of_the_ending_attempt_moves_into_the_job(store: JobStore) -> None:
    logs = JobLogStore(store.redis, store.keys)
    job, _ = await store.enqueue(spec(max_attempts=2))
    await store.claim("a", lease_ms=LEASE_MS)
    await logs.append(job.id, 1, [{"n": 1, "text": "first attempt"}])
    error = JobError(code=JobErrorCode.COMFY_UNAVAILABLE, message="gone", retryable=True)
    await store.fail(job.id, "a", error)
    await store.claim("b", lease_ms=LEASE_MS)
    lines = [{"n": n, "text": f"line {n}", "prompt_id": "p"} for n in (1, 2)]
    await logs.append(job.id, 2, lines)
    big = [{"n": n, "text": "x" * 300} for n in (1, 2, 3)]
    other, _ = await store.enqueue(spec())
    await store.claim("c", lease_ms=LEASE_MS)
    await logs.append(other.id, 1, big)
    await store.complete(job.id, "b", [])
    await store.complete(other.id, "c", [])

    # The ending attempt's short list is gone, held by the job; the earlier attempt's and
    # a long one stay lists.
    assert await store.redis.exists(store.keys.job_log(job.id, 2)) == 0
    assert await store.redis.hexists(store.keys.job(job.id), f"{FOLDED_JOBLOG}2")
    assert await store.redis.exists(store.keys.job_log(job.id, 1)) == 1
    assert await store.redis.exists(store.keys.job_log(other.id, 1)) == 1
    assert await logs.read(job.id, 2) == {1: [{"n": 1, "text": "first attempt"}], 2: lines}
    assert await logs.read(other.id, 1) == {1: big}
    # A line the node writes after the end joins them, in the hash while they fit there,
    # and in a list of their own beyond.
    await logs.append(job.id, 2, [{"n": 3, "text": "late"}])
    assert await store.redis.exists(store.keys.job_log(job.id, 2)) == 0
    assert (await logs.read(job.id, 2))[2] == [*lines, {"n": 3, "text": "late"}]
    await logs.append(job.id, 2, big)
    assert await store.redis.exists(store.keys.job_log(job.id, 2)) == 1
    assert (await logs.read(job.id, 2))[2] == [*lines, {"n": 3, "text": "late"}, *big]
    await logs.append(other.id, 1, [{"n": 4, "text": "after a long log"}])
    assert (await logs.read(other.id, 1))[1] == [*big, {"n": 4, "text": "after a long log"}]
    assert await store.redis.object("encoding", store.keys.job(job.id)) == b"listpack"


async def test_what_a_first_attempt_success_implies_is_not_stored(
    make_store: StoreFactory,
) -> None:
    store = await make_store(events_grace_ms=GRACE_MS)
    job, _ = await store.enqueue(spec(pool="p"))
    (claimed,) = await store.claim("a", pools=["p"], lease_ms=LEASE_MS)
    tag = attempt_tag(claimed.attempts, claimed.started_ms)
    outputs = [OutputRef(index=i, filename=f"o{i}.png", size=3, sha256="ab",
                         key=output_key("p", job.id, tag, i, f"o{i}.png"))
               for i in (0, 1)]  # fmt: skip
    done = await store.complete(job.id, "a", outputs)
    fields = await store.redis.hgetall(store.keys.job(job.id))
    assert b"history" not in fields
    assert b'"key"' not in fields[b"outputs"]
    assert done.outputs == outputs
    assert [(r.attempt, r.node_id, r.started_ms, r.ended_ms, r.outcome, r.error)
            for r in done.history] == [(1, "a", claimed.started_ms, done.finished_ms,
                                        "succeeded", None)]  # fmt: skip
    assert await store.get(job.id) == done
    live = await log(store, job.id)
    await stream_gone(store, job.id)
    assert await log(store, job.id) == folded_view(live)
    assert live[-1][1]["outputs"] == [o.model_dump(mode="json") for o in outputs]


async def test_keys_of_another_attempt_and_a_retried_history_are_stored(
    store: JobStore,
) -> None:
    job, _ = await store.enqueue(spec(max_attempts=2))
    await store.claim("a", lease_ms=LEASE_MS)
    error = JobError(code=JobErrorCode.COMFY_UNAVAILABLE, message="gone", retryable=True)
    await store.fail(job.id, "a", error)
    (claimed,) = await store.claim("b", lease_ms=LEASE_MS)
    stale = output_key(claimed.pool, job.id, attempt_tag(1, claimed.started_ms), 0, "o.png")
    outputs = [OutputRef(index=0, filename="o.png", size=3, key=stale)]
    done = await store.complete(job.id, "b", outputs)
    fields = await store.redis.hgetall(store.keys.job(job.id))
    assert stale.encode() in fields[b"outputs"]
    assert [r.outcome for r in done.history] == ["failed", "succeeded"]
    assert await store.get(job.id) == done
    assert done.outputs == outputs


async def test_a_finished_job_of_a_published_workflow_keeps_no_graph(store: JobStore) -> None:
    """Its graph is its version rendered with its params (WorkflowRegistry.job_graph): the
    hash drops it at the end, unless that version is not in Redis; a raw graph stays."""
    await store.redis.hset(store.keys.workflow("w"), "v1", "{}")
    published = await store.enqueue(spec(workflow="w", workflow_version="v1"))
    unknown = await store.enqueue(spec(workflow="w", workflow_version="v2"))
    raw = await store.enqueue(spec())
    ids = [job.id for job, _ in (published, unknown, raw)]
    for job_id in ids:
        assert await store.redis.hexists(store.keys.job(job_id), "graph")
    await store.cancel(ids[0])  # queued: it ends at once
    for _ in ids[1:]:
        await store.claim("a", lease_ms=LEASE_MS)
    for job_id in ids[1:]:
        await store.complete(job_id, "a", [])
    kept = [await store.redis.hexists(store.keys.job(job_id), "graph") for job_id in ids]
    assert kept == [False, True, True]
    assert (await store.get(ids[0])).graph == {}
