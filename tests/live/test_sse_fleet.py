"""Live progress through real processes: SSE from the balancer while a node runs the job on
a ComfyUI stand-in, resumed with Last-Event-ID; long-poll and synchronous submit."""

from __future__ import annotations

import asyncio
import base64
import time
from typing import Any

import aiohttp

from tests.e2e.conftest import Api
from tests.live.sse import Sse, events, read_all
from tests.support.png import png_size

SLOW_TXT2IMG = {"prompt": "a lighthouse", "width": 64, "height": 64, "steps": 60}


async def _submit(api: Api, params: dict[str, Any] = SLOW_TXT2IMG, **extra: Any) -> str:
    status, job = await api.post_job({"workflow": "txt2img", "params": params, **extra})
    assert status == 202, job
    return str(job["id"])


def _stream(api: Api, job_id: str, *, last_id: str | None = None, query: str = "") -> Any:
    headers = {"Last-Event-ID": last_id} if last_id else {}
    url = f"{api.base}/api/v1/jobs/{job_id}/events{query}"
    return api.session.get(url, headers=headers, timeout=aiohttp.ClientTimeout(total=60))


def _logged(seen: list[Sse]) -> list[tuple[str, str]]:
    """The events that belong to the log (they carry an id), as (id, type)."""
    return [(e.id, e.event) for e in seen if e.id is not None]


async def test_stream_ends_after_the_terminal_state_with_progress_and_previews(
    api: Api,
) -> None:
    job_id = await _submit(api)
    async with _stream(api, job_id) as resp:
        assert resp.status == 200
        assert resp.content_type == "text/event-stream"
        seen = await read_all(resp)
    assert (seen[-1].event, seen[-1].data["status"]) == ("state", "succeeded")
    kinds = {e.event for e in seen}
    assert {"state", "started", "progress", "preview"} <= kinds, kinds
    ids = [e.id for e in seen if e.id is not None]
    assert ids == sorted(ids, key=lambda i: tuple(map(int, i.split("-"))))
    assert len(ids) == len(set(ids))
    preview = next(e for e in seen if e.event == "preview")
    assert preview.data["url"].endswith(f"/api/v1/jobs/{job_id}/preview")
    code, ctype, data = await api.raw(preview.data["url"])
    assert (code, ctype) == (200, "image/png")
    png_size(data)


async def test_resume_with_last_event_id_misses_nothing_and_repeats_nothing(api: Api) -> None:
    job_id = await _submit(api)
    first: list[Sse] = []
    async with _stream(api, job_id) as resp:
        async for event in events(resp):
            first.append(event)
            # Drop the connection mid-run, after a few logged events.
            if len(_logged(first)) >= 4 and event.event == "progress":
                break
    assert first[-1].data.get("status") != "succeeded"
    last_id = _logged(first)[-1][0]
    async with _stream(api, job_id, last_id=last_id) as resp:
        rest = await read_all(resp)
    async with _stream(api, job_id) as resp:
        whole = await read_all(resp)
    seen = _logged(first) + _logged(rest)
    order = [tuple(map(int, entry_id.split("-"))) for entry_id, _ in seen]
    assert order == sorted(set(order))  # nothing repeated, in log order
    # Nothing missed: the finished log is all in what the two reads saw, under the same ids.
    # It was compacted when the job ended, so what they saw beyond it can only be progress,
    # previews and leases a later one superseded.
    assert set(_logged(whole)) <= set(seen)
    assert {kind for _, kind in set(seen) - set(_logged(whole))} <= {"progress", "preview", "lease"}
    assert whole[-1].data["status"] == "succeeded"


async def test_inline_previews_carry_the_latest_image(api: Api) -> None:
    job_id = await _submit(api)
    await api.finished(job_id)
    async with _stream(api, job_id, query="?previews=inline") as resp:
        seen = await read_all(resp)
    previews = [e for e in seen if e.event == "preview"]
    assert previews, [e.event for e in seen]
    # Only the newest preview is stored: it comes inline, older ones as a URL only.
    assert "data_url" in previews[-1].data
    assert all("data_url" not in p.data for p in previews[:-1])
    head, _, encoded = previews[-1].data["data_url"].partition(",")
    assert head == "data:image/png;base64"
    png_size(base64.b64decode(encoded))


async def test_long_poll_returns_when_the_job_ends(api: Api) -> None:
    job_id = await _submit(api)
    started = time.monotonic()
    status, job = await api.get(f"/api/v1/jobs/{job_id}?wait=60")
    assert status == 200
    assert job["status"] == "succeeded", job
    # It answered because the job ended, not because the wait ran out.
    assert time.monotonic() - started < 60


async def test_synchronous_submit_answers_200_when_done_in_time(api: Api) -> None:
    body = {"workflow": "txt2img", "params": {"prompt": "x", "width": 64, "height": 64,
                                              "steps": 2}}  # fmt: skip
    async with api.session.post(f"{api.base}/api/v1/jobs?wait=60", json=body) as r:
        assert r.status == 200
        job = await r.json()
    assert job["status"] == "succeeded"
    assert job["outputs"]


async def test_synchronous_submit_answers_202_when_the_wait_runs_out(api: Api) -> None:
    # No node serves this pool: the job stays queued through the whole wait.
    body = {"workflow": "txt2img", "params": SLOW_TXT2IMG, "pool": "nobody-serves-this"}
    async with api.session.post(f"{api.base}/api/v1/jobs?wait=1", json=body) as r:
        assert r.status == 202
        job = await r.json()
    assert job["status"] == "queued"
    status, _ = await api.delete(f"/api/v1/jobs/{job['id']}")
    assert status == 200


async def test_bad_waits_and_resume_points_are_400_and_unknown_jobs_404(api: Api) -> None:
    job_id = await _submit(api, {**SLOW_TXT2IMG, "steps": 1})
    for query in ("?wait=61", "?wait=-1", "?wait=abc"):
        status, body = await api.get(f"/api/v1/jobs/{job_id}{query}")
        assert status == 400, body
        assert "wait" in body["detail"]
    async with _stream(api, job_id, last_id="not-an-id") as resp:
        assert resp.status == 400
        assert resp.content_type == "application/problem+json"
    async with _stream(api, "f" * 32) as resp:
        assert resp.status == 404
    await asyncio.wait_for(api.finished(job_id), 60)
