"""Live progress: a job's event log as Server-Sent Events, its latest preview, and waiting
for a job to end (long-poll `GET ?wait=`, synchronous `POST ?wait=`).

SSE (`GET /api/v1/jobs/{id}/events`): every event of the job's log, oldest first, as
`id: <stream id>` / `event: <type>` / `data: <JSON>`; then the stream ends after the
terminal `state` event. Resuming with `Last-Event-ID` (or `?after=`) sends exactly the
events after that id: the stream id is the log's own cursor, so nothing is missed or
repeated. Extra lines carry no `id` (so they never move a client's resume point): `position`
(queue position while queued, when it changes) and `: keepalive` comments every
`HEARTBEAT_S` so proxies keep the connection open. A `preview` event gets a `url` to fetch
the latest preview, and with `?previews=inline` also a `data_url` (base64) when it is still
the latest.

Reads are blocking XREADs (store.events(block_ms=...)), never polling. Each waiting request
holds one Redis connection of a client of its own (so waits never starve API calls), and
their number is bounded per process (`MAX_LIVE`) and per caller (`MAX_LIVE_PER_CALLER`, so
one caller cannot take them all): beyond either SSE answers 503 and waits answer at once.
A stream ends after the job's end event, or as soon as the job has ended and its cursor is
past the last event (a resume point beyond the end must not hold a slot forever); it lasts
at most `MAX_STREAM_S`; clients reconnect with Last-Event-ID.
"""

from __future__ import annotations

import asyncio
import base64
import re
from collections import Counter
from collections.abc import AsyncIterator
from typing import Any

import structlog
from aiohttp import web

from comfyfleet.balancer.appkeys import CONFIG, JOBS, REDIS
from comfyfleet.balancer.schemas import JOB_ID_PATTERN
from comfyfleet.balancer.tenancy import check_job, job_or_404
from comfyfleet.balancer.urls import public_base
from comfyfleet.errors import BadRequest, ComfyfleetError, NotFound
from comfyfleet.models.job import Job, JobStatus
from comfyfleet.store.connect import connect
from comfyfleet.store.jobs import JobStore
from comfyfleet.store.keys import Keys
from comfyfleet.store.previews import PreviewStore
from comfyfleet.store.scripts import fields_of, text
from comfyfleet.web.auth import caller_of
from comfyfleet.web.numbers import ascii_int
from comfyfleet.web.openapi import Op, Param, Reply
from comfyfleet.web.redact import scrub
from comfyfleet.web.responses import dumps

log = structlog.get_logger(__name__)

# Longest ?wait= (s); most concurrent waits and streams per process.
MAX_WAIT_S = 60
MAX_LIVE = 256
MAX_LIVE_PER_CALLER = 32
HEARTBEAT_S = 15.0
# How often a queued job's position is looked at (ms) while its log is quiet.
POSITION_EVERY_MS = 1000
MAX_STREAM_S = 3600.0
READ_COUNT = 100
# What a browser's EventSource waits before reconnecting (ms).
RECONNECT_MS = 2000
STREAM_ID_PATTERN = r"^[0-9]{1,20}(-[0-9]{1,20})?$"
_STREAM_ID = re.compile(STREAM_ID_PATTERN)
_TERMINAL = frozenset(s.value for s in JobStatus if s.is_terminal)


class TooManyStreams(ComfyfleetError):
    status = 503
    code = "too-many-streams"
    title = "Too many live connections"
    retryable = True


class Live:
    """The resources of waiting requests: their own store client, and slots bounding them
    per process (`limit`) and per caller (`per_caller`), so one caller cannot take all."""

    def __init__(
        self,
        store: JobStore,
        previews: PreviewStore,
        limit: int = MAX_LIVE,
        per_caller: int = MAX_LIVE_PER_CALLER,
    ) -> None:
        self.store = store
        self.previews = previews
        self.limit = limit
        self.per_caller = per_caller
        self.held: Counter[str] = Counter()

    def take(self, caller: str) -> bool:
        """Take a slot for `caller`; False when all are taken, or the caller's share is."""
        if self.held.total() >= self.limit or self.held[caller] >= self.per_caller:
            return False
        self.held[caller] += 1
        return True

    def give_back(self, caller: str) -> None:
        self.held[caller] -= 1
        if self.held[caller] <= 0:
            del self.held[caller]


LIVE = web.AppKey("live", Live)


async def live_ctx(app: web.Application) -> AsyncIterator[None]:
    cfg = app[CONFIG]
    keys = Keys(cfg.redis.namespace)
    redis = connect(cfg.redis, pool_size=MAX_LIVE + 8)
    app[LIVE] = Live(JobStore(redis, keys), PreviewStore(app[REDIS], keys))
    yield
    await redis.aclose()


def is_end(event: dict[str, Any]) -> bool:
    return event.get("type") == "state" and event.get("status") in _TERMINAL


def wait_seconds(request: web.Request) -> int:
    """`?wait=S`: whole seconds, 0..MAX_WAIT_S (absent: 0, don't wait)."""
    raw = request.query.get("wait")
    if raw is None:
        return 0
    return ascii_int(raw, "query parameter 'wait' (seconds)", 0, MAX_WAIT_S)


async def _cursor_and_job(store: JobStore, job_id: str) -> tuple[str, Job | None]:
    """The log's last id ("0": none yet) and then the job, in one round trip: the cursor is
    taken first, so an end between the two reads is still seen by the wait."""
    async with store.redis.pipeline(transaction=False) as pipe:
        pipe.xrevrange(store.keys.events(job_id), count=1)
        pipe.hgetall(store.keys.job(job_id))
        newest, fields = await pipe.execute()
    cursor = text(newest[0][0]) if newest else "0"
    return cursor, Job.from_fields(fields_of(fields), job_id) if fields else None


async def wait_for_end(
    app: web.Application, job_id: str, wait_s: float, caller: str, *, queued: Job | None = None
) -> Job | None:
    """The job once it ends, or as it is after `wait_s` seconds (None: unknown job). Blocks
    on the job's log; answers at once when no live slot is free for `caller`. `queued`: the
    job as this request just enqueued it, so its log can hold nothing before its `queued`
    event (stream id `created_ms-0`, see open_log in lua/_lib.lua) and neither the cursor
    nor the job needs a read first."""
    live = app[LIVE]
    if not live.take(caller):
        return await app[JOBS].get(job_id)
    try:
        job: Job | None
        if queued is not None:
            cursor, job = f"{queued.created_ms}-0", queued
        else:
            cursor, job = await _cursor_and_job(live.store, job_id)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + wait_s
        # Each read brings the job as it is after the events read (one round trip), so the
        # end is answered from it without another read.
        while job is not None and not job.is_terminal:
            left_ms = int((deadline - loop.time()) * 1000)
            if left_ms <= 0:
                break
            events, job = await live.store.events_and_job(
                job_id, after=cursor, count=READ_COUNT, block_ms=left_ms
            )
            cursor = events[-1][0] if events else cursor
        return job
    finally:
        live.give_back(caller)


def sse(event: str, data: Any, event_id: str | None = None) -> bytes:
    head = f"id: {event_id}\n" if event_id is not None else ""
    return f"{head}event: {event}\n".encode() + b"data: " + dumps(data) + b"\n\n"


routes = web.RouteTableDef()


def _resume_point(request: web.Request) -> str:
    after = request.headers.get("Last-Event-ID") or request.query.get("after") or "0"
    if not _STREAM_ID.fullmatch(after):
        raise BadRequest(f"Last-Event-ID / after must be an event id like 1700000000000-0, "
                         f"got {after[:40]!r}")  # fmt: skip
    return after


class _Stream:
    """One SSE connection's state: where it is in the log and what it last said."""

    def __init__(self, request: web.Request, job: Job, response: web.StreamResponse) -> None:
        self.request = request
        self.live = request.app[LIVE]
        self.job_id = job.id
        self.status = job.status.value
        self.response = response
        self.inline = request.query.get("previews") == "inline"
        self.preview_url = f"{public_base(request)}/api/v1/jobs/{job.id}/preview"
        self.position: int | None = None
        self.last_write = asyncio.get_running_loop().time()

    async def write(self, chunk: bytes) -> None:
        await self.response.write(chunk)
        self.last_write = asyncio.get_running_loop().time()

    async def send_events(self, events: list[tuple[str, dict[str, Any]]]) -> bool:
        """Write a batch; True when it held the job's end."""
        for sid, event in events:
            kind = str(event.get("type", "event"))
            if kind == "preview":
                event = await self._with_preview(event)
            if kind == "state":
                self.status = str(event.get("status", self.status))
                event = scrub(event)  # its `error` names files on the ComfyUI host
            await self.write(sse(kind, event, sid))
            if is_end(event):
                return True
        return False

    async def _with_preview(self, event: dict[str, Any]) -> dict[str, Any]:
        event = {**event, "url": self.preview_url}
        if self.inline:
            latest = await self.live.previews.get(self.job_id)
            # Only the newest preview is stored: an older event gets its URL only.
            if latest is not None and latest.n == event.get("n"):
                encoded = base64.b64encode(latest.data).decode()
                event["data_url"] = f"data:{latest.content_type};base64,{encoded}"
        return event

    async def send_position(self) -> None:
        if self.status != JobStatus.QUEUED.value:
            return
        position = await self.request.app[JOBS].queue_position(self.job_id)
        if position is not None and position != self.position:
            self.position = position
            await self.write(sse("position", {"type": "position", "queue_position": position}))

    async def has_ended(self) -> bool:
        """The job is over (or expired with its log): its log will grow no more. Reads only
        the status field, not the job (whose graph may be megabytes)."""
        store = self.live.store
        status = await store.redis.hget(store.keys.job(self.job_id), "status")
        return status is None or text(status) in _TERMINAL

    async def run(self, after: str, ended: bool) -> None:
        """Stream from `after` until the job's end event is sent, or until the job has ended
        and the cursor is past its last event (a resume point past the end, even one that is
        not an event yet, must not hold a connection forever)."""
        loop = asyncio.get_running_loop()
        started = loop.time()
        await self.write(f"retry: {RECONNECT_MS}\n\n".encode())
        cursor = after
        while loop.time() - started < MAX_STREAM_S:
            queued = self.status == JobStatus.QUEUED.value
            # Once the job has ended, read what is left without blocking, then stop.
            quiet_ms = POSITION_EVERY_MS if queued else int(HEARTBEAT_S * 1000)
            block_ms = None if ended else quiet_ms
            events = await self.live.store.events(self.job_id, after=cursor, count=READ_COUNT,
                                                  block_ms=block_ms)  # fmt: skip
            if events:
                cursor = events[-1][0]
                if await self.send_events(events):
                    return
                continue
            if ended:
                return
            ended = await self.has_ended()
            await self.send_position()
            if loop.time() - self.last_write >= HEARTBEAT_S:
                await self.write(b": keepalive\n\n")


def _stream_response() -> web.StreamResponse:
    return web.StreamResponse(headers={
        "Content-Type": "text/event-stream",
        "Cache-Control": "no-cache",
        # nginx buffers responses unless told not to; a buffered stream is not live.
        "X-Accel-Buffering": "no",
    })  # fmt: skip


@routes.get("/api/v1/jobs/{job_id}/events")
async def job_events(request: web.Request) -> web.StreamResponse:
    after = _resume_point(request)
    if request.query.get("previews", "url") not in ("url", "inline"):
        raise BadRequest("query parameter 'previews' must be 'url' or 'inline'")
    job = await job_or_404(request)
    job_id = job.id
    live, caller = request.app[LIVE], caller_of(request)
    if not live.take(caller):
        raise TooManyStreams(
            f"this balancer serves {live.limit} live connections, at most "
            f"{live.per_caller} per caller; close one or retry soon"
        )
    response = _stream_response()
    try:
        await response.prepare(request)
        await _Stream(request, job, response).run(after, ended=job.is_terminal)
        await response.write_eof()
    except ConnectionError:
        pass  # the client went away
    except ComfyfleetError as exc:
        # Headers are sent: no problem document now. End the stream; the client
        # resumes from its Last-Event-ID and misses nothing.
        log.warning("event_stream_failed", job_id=job_id, error=exc.detail)
    finally:
        live.give_back(caller)
    return response


@routes.get("/api/v1/jobs/{job_id}/preview")
async def job_preview(request: web.Request) -> web.Response:
    job_id = await check_job(request)
    preview = await request.app[LIVE].previews.get(job_id)
    if preview is None:
        raise NotFound(f"job {job_id} has no preview (none yet, or it expired)", job_id=job_id)
    return web.Response(body=preview.data, content_type=preview.content_type,
                        headers={"Cache-Control": "no-store",
                                 "X-Preview-Number": str(preview.n)})  # fmt: skip


def _ops() -> list[Op]:
    job_id = Param("job_id", "path", {"type": "string", "pattern": JOB_ID_PATTERN}, "a job's id",
                   example="9f1c2e3d4b5a69788796a5b4c3d2e1f0")  # fmt: skip
    stream = (
        'id: 1760000000123-0\nevent: state\ndata: {"status":"running","node_id":"gpu-1",'
        '"attempt":1,"type":"state"}\n\nevent: position\ndata: {"type":"position",'
        '"queue_position":3}\n\n: keepalive\n\n'
    )
    return [
        Op("GET", "/api/v1/jobs/{job_id}/events", "streamJobEvents", "Follow a job live (SSE)",
           "The job's event log as Server-Sent Events, oldest first, ending after the terminal "
           "`state` event. Each logged event has `id:` (its stream id), `event:` (its type: "
           "`state`, `lease`, `submitted`, `started`, `executing`, `progress` {value, max, "
           "node}, `preview` {n, content_type, size, url[, data_url]}, `cancel_requested`...) "
           "and `data:` (JSON). Resume with `Last-Event-ID` (EventSource does this itself) or "
           "`?after=`: exactly the events after that id come, none missed, none repeated. "
           "Lines without `id:` never move the resume point: `position` (queue position "
           "while queued) and `: keepalive` comments every 15 s.",
           "jobs",
           {200: Reply("An event stream", schema={"type": "string"},
                       media_type="text/event-stream", example=stream)},
           params=[job_id,
                   Param("Last-Event-ID", "header", {"type": "string",
                                                     "pattern": STREAM_ID_PATTERN},
                         "resume after this event id", example="1760000000123-0"),
                   Param("after", "query", {"type": "string", "pattern": STREAM_ID_PATTERN},
                         "as Last-Event-ID, for clients that cannot set headers",
                         example="1760000000123-0"),
                   Param("previews", "query", {"type": "string", "enum": ["url", "inline"],
                                               "default": "url"},
                         "`inline`: the newest preview also as a base64 `data_url`",
                         example="inline")],
           errors=[503]),
        Op("GET", "/api/v1/jobs/{job_id}/preview", "getJobPreview", "Latest preview",
           "The newest preview image of a running job (kept 10 minutes). The header "
           "`X-Preview-Number` matches the `n` of its `preview` event.", "jobs",
           {200: Reply("The image", schema={"type": "string", "format": "binary"},
                       media_type="image/png", headers={"X-Preview-Number": "its `n`"})},
           params=[job_id], errors=[503]),
    ]  # fmt: skip


OPS = _ops()
