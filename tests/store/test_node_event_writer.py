"""The node's per-attempt event writer (node/job_events.py): a burst of frames becomes few
pipelined writes, in order, and Redis trouble costs the events, never the attempt."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import pytest

from comfyfleet.config import RedisConfig
from comfyfleet.node.job_events import JobEventWriter
from comfyfleet.redis_server import free_port
from comfyfleet.store.jobs import JobStore

from .conftest import LEASE_MS, spec

BURST = 40


async def test_a_burst_is_written_in_order_in_few_round_trips(
    store: JobStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    job, _ = await store.enqueue(spec())
    await store.claim("n", lease_ms=LEASE_MS)  # the log exists once the job runs
    writes: list[int] = []
    append = store.append_events

    async def counted(job_id: str, events: Sequence[tuple[str, Mapping[str, Any]]]) -> None:
        writes.append(len(events))
        await append(job_id, events)

    monkeypatch.setattr(store, "append_events", counted)
    writer = JobEventWriter(store, job.id)
    for i in range(BURST):  # as ComfyUI's frames arrive: no await in between
        writer.add("executing", {"node": str(i)})
    await writer.flush()

    logged = [e for _, e in await store.events(job.id) if e["type"] == "executing"]
    assert [e["node"] for e in logged] == [str(i) for i in range(BURST)]
    # The first event goes out at once; everything added while it was in flight, together.
    assert sum(writes) == BURST
    assert len(writes) <= 2, writes

    writer.add("executed", {"node": "x", "output": {}})  # a later event, after a quiet spell
    await writer.flush()
    assert (await store.events(job.id))[-1][1]["type"] == "executed"
    await writer.close()


async def test_redis_unreachable_costs_the_events_not_the_attempt(
    redis_config: RedisConfig,
) -> None:
    nowhere = redis_config.model_copy(update={"url": f"redis://127.0.0.1:{free_port()}/0"})
    store = JobStore.from_config(nowhere)
    try:
        writer = JobEventWriter(store, "0" * 32)
        writer.add("started", {"prompt_id": "p"})
        writer.add("executing", {"node": "1"})
        await writer.flush()  # returns: the write was tried, failed and was given up
        assert writer.pending == 0
    finally:
        await store.close()
