"""The one WebSocket a client keeps to ComfyUI (`/ws?clientId=...`), reconnecting forever.

ComfyUI sends a prompt's job messages only to the socket of the client_id that queued it,
and reconnecting with the same clientId replaces the old socket. ComfyUI never pings; the
client pings (`ws_heartbeat_s`) so a dead peer is noticed. After each (re)connect the first
message sent is the feature flags, so previews carry their prompt_id (binary type 4).
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable

import aiohttp
import orjson
import structlog

from comfyfleet.comfy import events as ev
from comfyfleet.comfy.errors import ComfyProtocolError
from comfyfleet.comfy.frames import parse_binary, parse_text
from comfyfleet.comfy.options import ComfyOptions
from comfyfleet.tasks import stop

log = structlog.get_logger(__name__)

FEATURE_FLAGS = {"supports_preview_metadata": True}


def backoff_delay(
    attempt: int, *, initial_s: float, max_s: float, jitter: float, rand: float
) -> float:
    """Seconds to wait before reconnect number `attempt` (0-based): doubling from
    `initial_s`, capped at `max_s`, scaled down by up to `jitter` (`rand` in [0, 1))."""
    base: float = min(max_s, initial_s * 2.0 ** min(attempt, 30))
    return base * (1.0 - jitter * rand)


class ComfySocket:
    """Connects, reads frames into events for `on_event`, and reconnects with backoff."""

    def __init__(
        self,
        *,
        session: Callable[[], aiohttp.ClientSession],
        url: str,
        options: ComfyOptions,
        clock: Callable[[], float],
        on_event: Callable[[ev.Event], None],
        on_connect: Callable[[bool], None],
        on_disconnect: Callable[[], None],
    ) -> None:
        self.url = url
        self.connected = asyncio.Event()
        self.last_frame_at = clock()  # monotonic s
        self.down_since: float | None = clock()  # monotonic s; None while connected
        self.connections = 0  # successful connects so far
        self._session = session
        self._options = options
        self._clock = clock
        self._on_event = on_event
        self._on_connect = on_connect
        self._on_disconnect = on_disconnect
        self._task: asyncio.Task[None] | None = None
        self._ws: aiohttp.ClientWebSocketResponse | None = None

    def start(self) -> None:
        """Start connecting in the background (idempotent)."""
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name=f"comfy-ws {self.url}")

    async def close(self) -> None:
        task, self._task = self._task, None
        await stop(task)
        self.connected.clear()

    async def drop(self) -> None:
        """Close the current connection; the socket reconnects by itself (for tests/ops)."""
        if self._ws is not None:
            await self._ws.close()

    async def _run(self) -> None:
        attempt = 0
        while True:
            ws = await self._connect()
            if ws is not None:
                got_frames = await self._serve(ws)
                attempt = 0 if got_frames else attempt + 1
            else:
                attempt += 1
            delay = backoff_delay(
                max(attempt - 1, 0),
                initial_s=self._options.reconnect_initial_s,
                max_s=self._options.reconnect_max_s,
                jitter=self._options.reconnect_jitter,
                rand=random.random(),
            )
            log.info("comfy.ws_reconnect_wait", url=self.url, delay_s=round(delay, 3))
            await asyncio.sleep(delay)

    async def _connect(self) -> aiohttp.ClientWebSocketResponse | None:
        try:
            async with asyncio.timeout(self._options.connect_timeout_s):
                ws = await self._session().ws_connect(
                    self.url,
                    heartbeat=self._options.ws_heartbeat_s,
                    max_msg_size=self._options.ws_max_msg_bytes,
                    timeout=aiohttp.ClientWSTimeout(ws_close=self._options.connect_timeout_s),
                )
                # ComfyUI reads feature flags only as the first message of a socket.
                flags = {"type": "feature_flags", "data": FEATURE_FLAGS}
                await ws.send_str(orjson.dumps(flags).decode())
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            log.warning("comfy.ws_connect_failed", url=self.url, error=repr(exc))
            return None
        return ws

    async def _serve(self, ws: aiohttp.ClientWebSocketResponse) -> bool:
        """Read until the connection ends. True if any frame arrived."""
        self._ws = ws
        self.connections += 1
        self.down_since = None
        self.connected.set()
        log.info("comfy.ws_connected", url=self.url, connection=self.connections)
        got_frames = False
        try:
            self._on_connect(self.connections > 1)
            async for msg in ws:
                self.last_frame_at = self._clock()
                got_frames = True
                if msg.type in (aiohttp.WSMsgType.TEXT, aiohttp.WSMsgType.BINARY):
                    self._dispatch(msg)
                elif msg.type == aiohttp.WSMsgType.ERROR:
                    log.warning("comfy.ws_error", url=self.url, error=repr(ws.exception()))
                    break
        except (aiohttp.ClientError, OSError) as exc:
            log.warning("comfy.ws_read_failed", url=self.url, error=repr(exc))
        finally:
            self._ws = None
            self.connected.clear()
            self.down_since = self._clock()
            await ws.close()
            log.info("comfy.ws_disconnected", url=self.url, close_code=ws.close_code)
            self._on_disconnect()
        return got_frames

    def _dispatch(self, msg: aiohttp.WSMessage) -> None:
        try:
            if msg.type == aiohttp.WSMsgType.TEXT:
                event = parse_text(msg.data)
            else:
                event = parse_binary(msg.data)
        except ComfyProtocolError as exc:
            log.warning("comfy.ws_bad_frame", url=self.url, error=str(exc))
            return
        self._on_event(event)
