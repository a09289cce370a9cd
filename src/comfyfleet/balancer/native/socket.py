"""ComfyUI's websocket on the fleet: `GET /ws?clientId=X` (and `/api/ws`).

A socket follows the prompts its principal posted with `client_id` X (the client's feed,
store/prompt_feed.py) and their event logs, in ONE blocking XREAD on the balancer's live
Redis client: nothing is held in this process, so a socket on replica A sees prompts posted
through replica B, and a new prompt wakes it like a new event does. Frames come from
`frames.PromptFrames`, in ComfyUI's order, with `status` frames carrying the principal's
count of unfinished prompts.

Reconnects: a socket (re)opened with a client id looks back `LOOKBACK_MS` in the client's
feed and replays each prompt found there that has not ended, or ended less than the events
grace before (RedisConfig.events_grace_ms, a minute: as long as the prompt's stream is
kept), from the start of its log. So a client that reconnects (or connects only after
posting) still sees the end of its prompt; it may see that prompt's earlier frames twice,
which ComfyUI clients filter by prompt_id anyway. ComfyUI itself sends nothing of a prompt
that ended while no socket was there. An ended prompt is replayed through the job store
rather than the blocking read: its stream may expire at any moment, and the store then
reads the log folded into the job (which lacks the `executed` frames' events; the outputs
are in /history).

Each socket holds one of the live slots the SSE streams share (events_api.Live), bounded
per process and per caller.
"""

from __future__ import annotations

import asyncio
import contextlib
import struct
import uuid
from typing import Any

import orjson
import structlog
from aiohttp import WSMsgType, web

from comfyfleet.balancer.appkeys import CONFIG
from comfyfleet.balancer.events_api import LIVE, TooManyStreams
from comfyfleet.balancer.native.frames import Frame, Preview, PromptFrames, Status
from comfyfleet.balancer.native.queues import remaining
from comfyfleet.errors import BadRequest, StoreError
from comfyfleet.models.job import Job
from comfyfleet.store.prompt_feed import CLIENT_ID_RE, PromptFeed
from comfyfleet.web.auth import Principal, caller_of, principal_of

log = structlog.get_logger(__name__)

# How far back a new socket looks in its client's feed (ms).
LOOKBACK_MS = 3600 * 1000
# Most events of an ended prompt one replay read takes.
REPLAY_READ = 100
# One blocking read's longest wait (ms): bounds how late a closed socket is noticed.
READ_BLOCK_MS = 1000
# Binary frame types (ComfyUI's protocol).
PREVIEW_IMAGE = 1
PREVIEW_IMAGE_WITH_METADATA = 4
_FORMATS = {"image/jpeg": 1, "image/png": 2}


async def websocket(request: web.Request) -> web.WebSocketResponse:
    client_id = request.query.get("clientId") or uuid.uuid4().hex
    if not CLIENT_ID_RE.match(client_id):
        raise BadRequest("clientId must be 1 to 128 letters, digits or '_.:-'", field="clientId")
    live, caller = request.app[LIVE], caller_of(request)
    if not live.take(caller):
        raise TooManyStreams("too many live connections; try again shortly")
    try:
        ws = web.WebSocketResponse()
        session = Session(ws, principal_of(request), client_id,
                          PromptFeed(live.store.redis, live.store.keys), live,
                          request.app[CONFIG].redis.events_grace_ms)  # fmt: skip
        # The first status tells the queue as it was when the client connected: counted
        # before the handshake completes, as a client may post at once after it.
        first = await session.connect()
        await ws.prepare(request)
        await session.run(first)
        return ws
    finally:
        live.give_back(caller)


class Session:
    """One socket: follows the client's prompts and sends their frames."""

    def __init__(self, ws: web.WebSocketResponse, principal: Principal, client_id: str,
                 feed: PromptFeed, live: Any, replay_ended_ms: int) -> None:  # fmt: skip
        self.ws = ws
        self.principal = principal
        self.client_id = client_id
        self.feed = feed
        self.store = live.store
        self.previews = live.previews
        self.feed_key = feed.key(principal.label, client_id)
        self.prompts: dict[str, PromptFrames] = {}
        self.cursors: dict[str, str] = {}
        self.metadata_previews = False
        self.connected_ms = 0
        # How long after its end a prompt found in the feed is still replayed (ms).
        self.replay_ended_ms = replay_ended_ms

    async def connect(self) -> int:
        """Note the time of connection; answer the queue count of the first status."""
        self.connected_ms = await self.store.now_ms()
        self.cursors[self.feed_key] = f"{max(0, self.connected_ms - LOOKBACK_MS)}-0"
        return await remaining(self.feed, self.principal)

    async def run(self, first_count: int) -> None:
        await self._send_status(sid=self.client_id, count=first_count)
        follower = asyncio.create_task(self._follow(), name=f"ws:{self.client_id}")
        try:
            await self._receive()
        finally:
            follower.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await follower

    async def _receive(self) -> None:
        """Read what the client sends (feature flags) until it closes the socket."""
        async for msg in self.ws:
            if msg.type is not WSMsgType.TEXT:
                continue
            with contextlib.suppress(orjson.JSONDecodeError):
                message = orjson.loads(msg.data)
                if isinstance(message, dict) and message.get("type") == "feature_flags":
                    data = message.get("data") or {}
                    self.metadata_previews = bool(data.get("supports_preview_metadata"))
                    flags = {"supports_preview_metadata": True, "max_upload_size": 104857600}
                    await self._send({"type": "feature_flags", "data": flags})

    async def _follow(self) -> None:
        while not self.ws.closed:
            try:
                entries = await self.feed.read(self.cursors, READ_BLOCK_MS)
            except StoreError as exc:
                log.warning("ws_read_failed", error=exc.detail)
                await asyncio.sleep(READ_BLOCK_MS / 1000)
                continue
            for stream, events in entries.items():
                if events:
                    self.cursors[stream] = events[-1][0]
                for entry_id, event in events:
                    if stream == self.feed_key:
                        await self._discover(str(event.get("job", "")))
                    else:
                        event.setdefault("at_ms", int(entry_id.split("-")[0]))
                        await self._event(stream, event)

    async def _discover(self, job_id: str) -> None:
        if not job_id or job_id in self.prompts:
            return
        job: Job | None = await self.store.get(job_id)
        if job is None or job.owner != self.principal.label:
            return
        ended_long_ago = job.is_terminal and (job.finished_ms or 0) < (
            self.connected_ms - self.replay_ended_ms
        )
        if ended_long_ago:
            return
        frames = PromptFrames(job.id, output_subfolder=job.id)
        # ComfyUI sends a status as a prompt is queued; its log shows `queued` only once
        # a node takes it (store/events.py), so say it now.
        await self._frames(frames.feed({"type": "state", "status": "queued"}))
        if job.is_terminal:
            await self._replay(job.id, frames)
            return
        self.prompts[self.feed.events_key(job.id)] = frames
        self.cursors[self.feed.events_key(job.id)] = "0"

    async def _replay(self, job_id: str, frames: PromptFrames) -> None:
        """Send the frames of an ended prompt's whole log, stream or folded (see the
        module's docstring)."""
        cursor = "0"
        while not frames.ended and not self.ws.closed:
            events = await self.store.events(job_id, after=cursor, count=REPLAY_READ)
            if not events:
                return
            cursor = events[-1][0]
            for entry_id, event in events:
                event.setdefault("at_ms", int(entry_id.split("-")[0]))
                await self._frames(frames.feed(event))

    async def _event(self, stream: str, event: dict[str, Any]) -> None:
        frames = self.prompts.get(stream)
        if frames is None:
            return
        await self._frames(frames.feed(event))
        if frames.ended:
            del self.prompts[stream]
            del self.cursors[stream]

    async def _frames(self, frames: list[Frame]) -> None:
        for frame in frames:
            if isinstance(frame, Status):
                await self._send_status()
            elif isinstance(frame, Preview):
                await self._send_preview(frame)
            else:
                await self._send(frame)

    async def _send(self, frame: dict[str, Any]) -> None:
        if not self.ws.closed:
            await self.ws.send_str(orjson.dumps(frame).decode())

    async def _send_status(self, sid: str | None = None, count: int | None = None) -> None:
        if count is None:
            count = await remaining(self.feed, self.principal)
        data: dict[str, Any] = {"status": {"exec_info": {"queue_remaining": count}}}
        if sid is not None:
            data["sid"] = sid
        await self._send({"type": "status", "data": data})

    async def _send_preview(self, frame: Preview) -> None:
        prompt_id = frame.prompt_id
        stored = await self.previews.get(prompt_id)
        if stored is None or self.ws.closed:
            return
        if self.metadata_previews:
            meta = orjson.dumps({"node_id": frame.node, "prompt_id": prompt_id,
                                 "display_node_id": frame.node, "parent_node_id": None,
                                 "real_node_id": frame.node,
                                 "image_type": stored.content_type})  # fmt: skip
            head = struct.pack(">II", PREVIEW_IMAGE_WITH_METADATA, len(meta)) + meta
        else:
            head = struct.pack(">II", PREVIEW_IMAGE, _FORMATS.get(stored.content_type, 2))
        await self.ws.send_bytes(head + stored.data)
