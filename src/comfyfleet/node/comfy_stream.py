"""Reading ComfyUI's output: `LineFeed` turns one stream's text into events, and
`LogStreamFollower` reads the log stream of a ComfyUI the node did not start.

ComfyUI keeps its last 300 log entries (`GET /internal/logs/raw`: `{"entries": [{"t", "m"}],
"size"}`) and, after `PATCH /internal/logs/subscribe {"clientId", "enabled": true}`, sends
each new entry to that client's socket as `{"type": "logs", "data": {"entries": [...],
"size": null}}` (app/logger.py, api_server/routes/internal/internal_routes.py). It forgets a
subscription once the socket is gone, so the follower subscribes again after every
(re)connect, then reads the backlog for what it missed meanwhile: entries newer than the
last one it saw (on the first connect, all of them: they are marked `replayed`, as no prompt
can be told for them). Live entries that arrive while the backlog is read wait for it, so
the order holds and nothing is taken twice.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable

import structlog

from comfyfleet.clock import SYSTEM_CLOCK, Clock
from comfyfleet.comfy import ComfyClient, Event
from comfyfleet.comfy import events as ev
from comfyfleet.comfy.models import LogEntry
from comfyfleet.errors import ComfyError
from comfyfleet.models.retry import Backoff
from comfyfleet.node.comfy_lines import ComfyLine, Grouper, Splitter
from comfyfleet.tasks import Pacer

log = structlog.get_logger(__name__)

# Quiet time (s) after which a held traceback counts as complete.
FLUSH_S = 0.2
RESYNC_BACKOFF = Backoff(base_ms=500, cap_ms=10_000, jitter=False)
Sink = Callable[[ComfyLine], None]


class LineFeed:
    """One stream's text, in any pieces, to events for `sink`. A traceback held for its end
    is flushed after `FLUSH_S` of quiet (a timer, not a poll)."""

    def __init__(self, stream: str, sink: Sink, clock: Clock = SYSTEM_CLOCK) -> None:
        self.splitter = Splitter()
        self.grouper = Grouper(stream)
        self.sink = sink
        self.clock = clock
        self._timer: asyncio.TimerHandle | None = None

    def feed(self, piece: str, comfy_t: str | None = None, *, replayed: bool = False) -> None:
        now = self.clock.monotonic()
        for line in self.splitter.feed(piece):
            for event in self.grouper.feed(line, now, comfy_t, replayed=replayed):
                self.sink(event)
        self._arm()

    def _arm(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self.grouper.holding:
            self._timer = asyncio.get_running_loop().call_later(FLUSH_S, self.flush)

    def flush(self) -> None:
        """Emit a held traceback now."""
        for event in self.grouper.flush():
            self.sink(event)

    def close(self) -> None:
        """The stream ended: emit what is left."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        now = self.clock.monotonic()
        for line in self.splitter.rest():
            for event in self.grouper.feed(line, now):
                self.sink(event)
        self.flush()


class LogStreamFollower:
    """Follows the log stream of an external ComfyUI over the client's socket."""

    def __init__(self, comfy: ComfyClient, sink: Sink, clock: Clock = SYSTEM_CLOCK) -> None:
        self.comfy = comfy
        self.feed = LineFeed("log", sink, clock)
        self.last_t: str | None = None  # ComfyUI's timestamp of the newest entry taken
        self._held: list[LogEntry] | None = None  # live entries waiting for a backlog read
        self._resync = asyncio.Event()
        comfy.add_listener(self._on_event)
        comfy.add_connect_listener(lambda _reconnected: self._resync.set())

    def _on_event(self, event: Event) -> None:
        if not isinstance(event, ev.Logs):
            return
        if self._held is not None:
            self._held.extend(event.entries)
            return
        for entry in event.entries:
            self._take(entry)

    def _take(self, entry: LogEntry, *, replayed: bool = False) -> None:
        if self.last_t is None or entry.t > self.last_t:
            self.last_t = entry.t
        self.feed.feed(entry.m, entry.t, replayed=replayed)

    async def sync_once(self) -> None:
        """Subscribe, then take the backlog entries not seen yet, then the live entries
        that came meanwhile. Raises ComfyError if ComfyUI did not answer."""
        self._held = []
        try:
            await self.comfy.subscribe_logs(True)
            backlog = await self.comfy.logs_raw()
            seen = self.last_t
            for entry in backlog.entries:
                if seen is None or entry.t > seen:
                    self._take(entry, replayed=True)
        finally:
            held, self._held = self._held, None
            seen = self.last_t
            for entry in held:
                if seen is None or entry.t > seen:
                    self._take(entry)

    async def run(self) -> None:
        """Sync after every (re)connect of the socket, forever."""
        pacer = Pacer(RESYNC_BACKOFF)
        with contextlib.suppress(ComfyError):  # not up yet: the socket keeps trying
            await self.comfy.connect()
        if self.comfy.socket.connected.is_set():  # connected before this listened
            self._resync.set()
        while True:
            await self._resync.wait()
            self._resync.clear()
            try:
                await self.sync_once()
                pacer.reset()
            except ComfyError as exc:
                log.info("comfy_log_sync_failed", error=str(exc), retry_in_s=pacer.delay_s)
                await pacer.sleep()
                self._resync.set()
