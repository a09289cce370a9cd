"""WebSocket registry, the ordered outbox and the log buffer.

Like ComfyUI's send_sync + publish_loop, every message goes through one queue drained by
one task, so frames reach each socket in the order they were produced. A message with a
`sid` goes to that client only (if connected); without one it goes to every socket.

Logs as ComfyUI's app/logger.py keeps them: each logging call is one entry `{"t", "m"}`
(local ISO time; the message plus "\n", so a traceback is one multi-line entry), the last
300 kept, and each new entry sent to the subscribed sockets as a `logs` frame. ComfyUI
drops a subscription whose socket is gone when it next sends; so does the sim. Like
ComfyUI's console, the lines are also written to `echo` (the CLI's stderr) when given.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import struct
from collections import deque
from datetime import datetime
from typing import Any, TextIO

from aiohttp import ClientError, web

from comfyfleet.sim.faults import Faults

LOG_CAPACITY = 300
MAX_UPLOAD_SIZE = 104857600
SERVER_FEATURES = {"supports_preview_metadata": True, "max_upload_size": MAX_UPLOAD_SIZE}
BINARY_PREVIEW = 1
BINARY_TEXT = 3
BINARY_PREVIEW_WITH_METADATA = 4
Outgoing = tuple[str | int, Any, str | None]


class Hub:
    def __init__(self, faults: Faults, echo: TextIO | None = None) -> None:
        self.faults = faults
        self.echo = echo
        self.sockets: dict[str, web.WebSocketResponse] = {}
        self.feature_flags: dict[str, dict[str, Any]] = {}
        self.outbox: asyncio.Queue[Outgoing] = asyncio.Queue()
        self.logs: deque[dict[str, str]] = deque(maxlen=LOG_CAPACITY)
        self.log_subscribers: set[str] = set()

    def send(self, event: str, data: Any, sid: str | None = None) -> None:
        """Queue a JSON message; delivered in order by publish_loop()."""
        self.outbox.put_nowait((event, data, sid))

    def send_binary(self, event: int, payload: bytes, sid: str | None = None) -> None:
        self.outbox.put_nowait((event, payload, sid))

    def supports_metadata(self, sid: str | None) -> bool:
        if sid is None:
            return False
        return bool(self.feature_flags.get(sid, {}).get("supports_preview_metadata", False))

    def send_preview(self, png: bytes, meta: dict[str, Any], sid: str | None) -> None:
        """A preview frame: type 4 with metadata for clients that asked for it, else type 1."""
        if self.supports_metadata(sid):
            body = json.dumps({**meta, "image_type": "image/png"}).encode()
            payload = struct.pack(">I", len(body)) + body + png
            self.send_binary(BINARY_PREVIEW_WITH_METADATA, payload, sid)
        else:
            self.send_binary(BINARY_PREVIEW, struct.pack(">I", 2) + png, sid)

    def send_text(self, node_id: str, text: str, sid: str | None = None) -> None:
        node = node_id.encode()
        self.send_binary(BINARY_TEXT, struct.pack(">I", len(node)) + node + text.encode(), sid)

    async def publish_loop(self) -> None:
        while True:
            message = await self.outbox.get()
            await self.faults.gate()
            await self.deliver(*message)

    async def deliver(self, event: str | int, data: Any, sid: str | None) -> None:
        if sid is None:
            targets = list(self.sockets.values())
        else:
            socket = self.sockets.get(sid)
            targets = [] if socket is None else [socket]
        for ws in targets:
            # A socket that went away mid-send is not an error for the sender (ComfyUI
            # logs and carries on too).
            with contextlib.suppress(ClientError, ConnectionError, RuntimeError):
                if isinstance(event, int):
                    await ws.send_bytes(struct.pack(">I", event) + data)
                else:
                    await ws.send_str(json.dumps({"type": event, "data": data}))

    async def drop_all(self) -> None:
        """Close every websocket (fault injection: the network dropped them)."""
        for ws in list(self.sockets.values()):
            with contextlib.suppress(ClientError, ConnectionError, RuntimeError):
                await ws.close(code=1001, message=b"sim: dropped")

    def log(self, message: str) -> None:
        """Append one line to the log buffer and push it to subscribed sockets."""
        entry = {"t": datetime.now().isoformat(), "m": message + "\n"}
        self.logs.append(entry)
        if self.echo is not None:
            self.echo.write(entry["m"])
            self.echo.flush()
        for sid in list(self.log_subscribers):
            if sid not in self.sockets:  # ComfyUI's TerminalService unsubscribes it too
                self.log_subscribers.discard(sid)
                continue
            self.send("logs", {"entries": [entry], "size": None}, sid)
