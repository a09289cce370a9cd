"""A TCP sink for Logdy (`logdy socket PORT`): one JSON object per `\\n`-terminated line.

Logging must never wait on Logdy. `push` (called by the structlog renderer, from any thread,
before or after the loop starts) only appends an encoded line to a bounded in-memory buffer;
one asyncio task owns the connection and writes. When the buffer is full the oldest lines
go first and are counted in `dropped`; the count is logged once the connection is back.
Lines already handed to a connection that then breaks may be lost (at-most-once): Logdy
sends no acknowledgements to build anything stronger on.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading
from collections import deque
from collections.abc import Mapping
from typing import Any

import orjson
import structlog

from comfyfleet.tasks import stop

# Logdy splits its socket input with Go's bufio.Scanner, whose default token cap is 64 KiB;
# a longer line would stall its reader. 1 KiB of headroom below that, newline included.
MAX_LINE_BYTES = 63 * 1024
DEFAULT_MAX_LINES = 10_000
DEFAULT_MAX_BYTES = 16 * 1024 * 1024
# Bytes written per write() call, so one huge backlog does not become one huge buffer copy.
BATCH_BYTES = 256 * 1024
DEFAULT_BACKOFF_INITIAL_S = 0.1
DEFAULT_BACKOFF_MAX_S = 10.0
DEFAULT_CONNECT_TIMEOUT_S = 5.0
DEFAULT_CLOSE_TIMEOUT_S = 2.0
# What a line keeps when cutting its largest fields was not enough (many small fields).
_ESSENTIAL = ("timestamp", "level", "event", "logger", "role", "node_id", "job_id")
_ESSENTIAL_CHARS = 1000
_FIT_ROUNDS = 8

log = structlog.get_logger(__name__)


def encode(obj: Any) -> bytes:
    """JSON bytes of a log event, whatever it holds (unknown objects become their str())."""
    try:
        return orjson.dumps(obj, default=str, option=orjson.OPT_NON_STR_KEYS)
    except (TypeError, ValueError):
        # orjson refuses ints beyond 64 bits and some odd containers; the stdlib does not.
        pass
    try:
        return json.dumps(obj, default=str, ensure_ascii=False).encode()
    except (TypeError, ValueError):
        if isinstance(obj, Mapping):
            return orjson.dumps({str(k): repr(v) for k, v in obj.items()})
        return orjson.dumps(repr(obj))


def _cut(text: str, max_bytes: int) -> str:
    return text.encode()[: max(0, max_bytes)].decode("utf-8", "ignore")


def fit_line(
    event: Mapping[str, Any], max_bytes: int = MAX_LINE_BYTES, line: bytes | None = None
) -> bytes:
    """The event as one `\\n`-terminated JSON line of at most `max_bytes` bytes.

    An oversized event has its largest fields cut (each cut value ends with "…") and gains
    `"truncated": true`; the result is still one valid JSON object. `line` is the event
    already encoded, when the caller has it."""
    if line is None:
        line = encode(event)
    if len(line) < max_bytes:
        return line + b"\n"
    fields: dict[str, Any] = {str(k): v for k, v in event.items()}
    fields["truncated"] = True
    for _ in range(_FIT_ROUNDS):
        line = encode(fields)
        excess = len(line) + 1 - max_bytes
        if excess <= 0:
            return line + b"\n"
        sizes = {k: len(encode(v)) for k, v in fields.items() if k != "truncated"}
        key = max(sizes, key=sizes.__getitem__)
        value = fields[key]
        text = value if isinstance(value, str) else encode(value).decode()
        fields[key] = _cut(text, sizes[key] - excess - 8) + "…"
    essential = {k: _cut(str(fields[k]), _ESSENTIAL_CHARS) for k in _ESSENTIAL if k in fields}
    return encode({**essential, "truncated": True}) + b"\n"


class LogdySink:
    """Bounded buffer + one writer task holding a TCP connection to Logdy.

    `max_lines`/`max_bytes` bound the buffer; backoff delays are in seconds, doubling from
    `backoff_initial_s` to `backoff_max_s` while Logdy is unreachable."""

    def __init__(
        self,
        host: str,
        port: int,
        *,
        max_lines: int = DEFAULT_MAX_LINES,
        max_bytes: int = DEFAULT_MAX_BYTES,
        max_line_bytes: int = MAX_LINE_BYTES,
        backoff_initial_s: float = DEFAULT_BACKOFF_INITIAL_S,
        backoff_max_s: float = DEFAULT_BACKOFF_MAX_S,
        connect_timeout_s: float = DEFAULT_CONNECT_TIMEOUT_S,
    ) -> None:
        self.host = host
        self.port = port
        self.max_lines = max_lines
        self.max_bytes = max_bytes
        self.max_line_bytes = max_line_bytes
        self.backoff_initial_s = backoff_initial_s
        self.backoff_max_s = backoff_max_s
        self.connect_timeout_s = connect_timeout_s
        # Lines thrown away because the buffer was full, since construction.
        self.dropped = 0
        # Successful connections so far (a reconnect makes it 2, 3, ...).
        self.connects = 0
        self.connected = False
        self._reported_drops = 0
        self._buffer: deque[bytes] = deque()
        self._buffered_bytes = 0
        # push() may run on any thread; the lock is held only for a few deque operations.
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._loop_thread: int | None = None
        self._wake: asyncio.Event | None = None
        self._closing: asyncio.Event | None = None
        self._task: asyncio.Task[None] | None = None

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    def pending(self) -> int:
        """Lines buffered and not yet written."""
        with self._lock:
            return len(self._buffer)

    def push(self, event: Mapping[str, Any], line: bytes | None = None) -> None:
        """Queue one event (already encoded as `line`, if given). Never blocks on I/O."""
        data = fit_line(event, self.max_line_bytes, line)
        with self._lock:
            self._buffer.append(data)
            self._buffered_bytes += len(data)
            while len(self._buffer) > self.max_lines or self._buffered_bytes > self.max_bytes:
                self._buffered_bytes -= len(self._buffer.popleft())
                self.dropped += 1
        self._notify()

    def _notify(self) -> None:
        loop, wake = self._loop, self._wake
        if loop is None or wake is None:
            return  # not started: the buffer holds the lines until start()
        if threading.get_ident() == self._loop_thread:
            wake.set()
            return
        with contextlib.suppress(RuntimeError):  # the loop already closed
            loop.call_soon_threadsafe(wake.set)

    def _take(self) -> bytes:
        with self._lock:
            chunks: list[bytes] = []
            size = 0
            while self._buffer and size < BATCH_BYTES:
                chunk = self._buffer.popleft()
                chunks.append(chunk)
                size += len(chunk)
            self._buffered_bytes -= size
        return b"".join(chunks)

    async def start(self) -> None:
        """Start the writer task on the running loop; lines pushed earlier go out first."""
        if self._task is not None:
            return
        self._loop = asyncio.get_running_loop()
        self._loop_thread = threading.get_ident()
        self._wake = asyncio.Event()
        self._closing = asyncio.Event()
        self._task = asyncio.create_task(self._run(), name=f"logdy-sink {self.address}")

    async def aclose(self, timeout_s: float = DEFAULT_CLOSE_TIMEOUT_S) -> None:
        """Flush what is buffered for at most `timeout_s` seconds, then stop."""
        task, closing = self._task, self._closing
        if task is None or closing is None:
            return
        closing.set()
        self._notify()
        try:
            await asyncio.wait_for(asyncio.shield(task), timeout_s)
        except TimeoutError:
            await stop(task)
        finally:
            self._task = None

    async def _run(self) -> None:
        assert self._closing is not None
        backoff = self.backoff_initial_s
        while True:
            try:
                reader, writer = await asyncio.wait_for(
                    asyncio.open_connection(self.host, self.port), self.connect_timeout_s
                )
            except (OSError, TimeoutError):
                if self._closing.is_set():
                    return  # Logdy is away: what is buffered cannot be flushed
                await self._pause(backoff)
                backoff = min(backoff * 2, self.backoff_max_s)
                continue
            backoff = self.backoff_initial_s
            self.connects += 1
            self.connected = True
            try:
                await self._pump(reader, writer)
                return
            except (OSError, EOFError):
                pass  # Logdy went away; reconnect below
            finally:
                self.connected = False
                writer.close()
                with contextlib.suppress(OSError, TimeoutError):
                    await asyncio.wait_for(writer.wait_closed(), self.connect_timeout_s)
            if self._closing.is_set() and not self.pending():
                return
            await self._pause(backoff)

    async def _pause(self, seconds: float) -> None:
        assert self._closing is not None
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._closing.wait(), seconds)

    async def _pump(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """Write until closing with an empty buffer; raise when the connection breaks."""
        assert self._wake is not None
        assert self._closing is not None
        # Take the backlog before logging the drop count, so that line cannot evict it.
        backlog = self._take()
        self._report_drops()
        if backlog:
            writer.write(backlog)
            await writer.drain()
        # Logdy never writes back: a read that returns means the peer closed.
        eof: asyncio.Task[bytes] = asyncio.create_task(reader.read(4096))
        try:
            while True:
                if eof.done():
                    if not eof.result():
                        raise EOFError("Logdy closed the connection")
                    eof = asyncio.create_task(reader.read(4096))
                self._wake.clear()
                chunk = self._take()
                if chunk:
                    writer.write(chunk)
                    await writer.drain()
                    continue
                if self._closing.is_set():
                    return
                waiter = asyncio.create_task(self._wake.wait())
                await asyncio.wait({waiter, eof}, return_when=asyncio.FIRST_COMPLETED)
                waiter.cancel()
        finally:
            if eof.done() and not eof.cancelled():
                eof.exception()  # retrieved, so asyncio does not report it as lost
            eof.cancel()

    def _report_drops(self) -> None:
        dropped = self.dropped - self._reported_drops
        if dropped:
            self._reported_drops = self.dropped
            log.warning(
                "logdy_lines_dropped",
                dropped=dropped,
                dropped_total=self.dropped,
                logdy=self.address,
                why="buffer full while Logdy was unreachable; the oldest lines went first",
            )
