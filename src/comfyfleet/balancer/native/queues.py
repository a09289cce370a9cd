"""A principal's unfinished prompts: what `/queue`, `/prompt` and the websocket's
`queue_remaining` count, so a client that waits for 0 waits for its own work, not the
fleet's."""

from __future__ import annotations

from comfyfleet.models.job import Job, JobStatus
from comfyfleet.store.jobs import MAX_PAGE, JobStore
from comfyfleet.store.prompt_feed import PromptFeed
from comfyfleet.web.auth import Principal

# Most jobs per status looked through (pages of MAX_PAGE): bounds the cost of a listing on
# a very deep fleet queue; a principal with more waiting sees the oldest ones counted last.
SCAN_PAGES = 10


async def _of(store: JobStore, status: JobStatus, principal: Principal) -> list[Job]:
    mine: list[Job] = []
    cursor: str | None = None
    for _ in range(SCAN_PAGES):
        page, cursor = await store.list_jobs(status=status, cursor=cursor, limit=MAX_PAGE)
        mine += [j for j in page if principal.kind == "admin" or j.owner == principal.label]
        if cursor is None:
            break
    mine.sort(key=lambda job: job.seq)  # oldest first, as ComfyUI's queue runs them
    return mine


async def unfinished(store: JobStore, principal: Principal) -> tuple[list[Job], list[Job]]:
    """(running, queued) jobs of `principal` (every principal's for the admin)."""
    return (
        await _of(store, JobStatus.RUNNING, principal),
        await _of(store, JobStatus.QUEUED, principal),
    )


async def remaining(feed: PromptFeed, principal: Principal) -> int:
    """`queue_remaining`: the principal's queued + running prompts (everyone's for the
    admin), counted without loading the jobs."""
    return await feed.unfinished(None if principal.kind == "admin" else principal.label)
