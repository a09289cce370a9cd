from __future__ import annotations

import pytest

from comfyfleet.errors import BadRequest
from comfyfleet.models.job import JobStatus, OutputRef
from comfyfleet.store.jobs import JobStore

from .conftest import LEASE_MS, spec


async def test_pages_newest_first(store: JobStore) -> None:
    ids = [(await store.enqueue(spec()))[0].id for _ in range(7)]
    seen: list[str] = []
    cursor: str | None = None
    pages = 0
    while True:
        jobs, cursor = await store.list_jobs(cursor=cursor, limit=3)
        seen += [j.id for j in jobs]
        pages += 1
        if cursor is None:
            break
    assert seen == ids[::-1]
    assert pages == 3


async def test_status_filter(store: JobStore) -> None:
    ids = [(await store.enqueue(spec()))[0].id for _ in range(5)]
    running = await store.claim("n", capacity=2, lease_ms=LEASE_MS)
    await store.complete(running[0].id, "n", [OutputRef(index=0, filename="a", size=1)])
    await store.cancel(ids[4])

    async def listed(status: JobStatus) -> list[str]:
        jobs, cursor = await store.list_jobs(status=status, limit=10)
        assert cursor is None
        assert all(j.status is status for j in jobs)
        return [j.id for j in jobs]

    assert await listed(JobStatus.QUEUED) == [ids[3], ids[2]]
    assert await listed(JobStatus.RUNNING) == [ids[1]]
    assert await listed(JobStatus.SUCCEEDED) == [ids[0]]
    assert await listed(JobStatus.CANCELLED) == [ids[4]]
    assert await listed(JobStatus.FAILED) == []
    page, cursor = await store.list_jobs(status=JobStatus.QUEUED, limit=1)
    assert ([j.id for j in page], cursor is not None) == ([ids[3]], True)
    page, _ = await store.list_jobs(status=JobStatus.QUEUED, cursor=cursor, limit=1)
    assert [j.id for j in page] == [ids[2]]


async def test_expired_jobs_leave_the_index_when_listed(store: JobStore) -> None:
    ids = [(await store.enqueue(spec()))[0].id for _ in range(4)]
    await store.redis.delete(store.keys.job(ids[3]), store.keys.job(ids[2]))  # as a TTL would
    jobs, cursor = await store.list_jobs(limit=2)
    assert ([j.id for j in jobs], cursor) == ([ids[1], ids[0]], None)
    assert await store.redis.zcard(store.keys.jobs_by_status("queued")) == 2


@pytest.mark.parametrize("cursor", ["abc", "-1", ""])
async def test_bad_cursor_is_a_bad_request(store: JobStore, cursor: str) -> None:
    with pytest.raises(BadRequest):
        await store.list_jobs(cursor=cursor)


async def test_get_unknown_is_none(store: JobStore) -> None:
    assert await store.get("nope") is None
