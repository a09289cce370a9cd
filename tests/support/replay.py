"""A small aiohttp server that answers from the recorded ComfyUI traces, on loopback.

HTTP: register recorded answers (`http(trace)`) or synthetic ones (`json(...)`); each
route answers its registered responses in order, repeating the last. Unregistered routes
answer 404 and are listed in `unmatched`. Every request is kept in `requests`.

WebSocket (`/ws`, `/api/ws`): each connection of a clientId plays that client's next
script (`ws(client_id, steps)`): recorded frames sent as recorded (binary frames rebuilt
from `binary_payloads/`), `Gate` (wait until that client POSTs /prompt, or `release()`),
`Drop` (close the socket: the client must reconnect); at the end of a script the socket
stays open and quiet (a stall), as ComfyUI does between jobs. Client messages are kept in
`ws_received`. Recorded timings are ignored: frames go out as fast as the client reads.
"""

from __future__ import annotations

import asyncio
import struct
from collections import defaultdict, deque
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl

import orjson
from aiohttp import WSCloseCode, web

from tests.support.traces import TRACES, load

_SKIP_HEADERS = {"date", "server", "content-length", "transfer-encoding", "connection"}


@dataclass(frozen=True)
class Gate:
    """Wait until the client POSTs /prompt (or the test calls `release`)."""


@dataclass(frozen=True)
class Drop:
    """Close the socket, as a ComfyUI restart or a network cut would."""


Step = str | bytes | Gate | Drop


@dataclass
class Received:
    method: str
    path: str
    query: dict[str, str]
    json: Any = None
    form: dict[str, Any] = field(default_factory=dict)


@dataclass
class Answer:
    status: int
    body: bytes = b""
    headers: list[tuple[str, str]] = field(default_factory=list)
    reason: str | None = None


def recorded_body(trace: dict[str, Any]) -> bytes:
    """The answer's bytes: exact when recorded; images (only a hash is recorded) are
    rebuilt as their recorded head padded to the recorded length."""
    if trace.get("body_raw") is not None:
        return str(trace["body_raw"]).encode()
    if trace.get("body_text") is not None:
        return str(trace["body_text"]).encode()
    if "body_head_hex" in trace:
        head = bytes.fromhex(trace["body_head_hex"])
        return head + b"\0" * (int(trace["body_len"]) - len(head))
    if "body_summary" in trace:  # /object_info: only some node entries were kept
        summary = trace["body_summary"]
        return orjson.dumps({k: v for k, v in summary.items() if isinstance(v, dict)})
    return b""


def recorded_answer(trace: dict[str, Any]) -> Answer:
    headers = [(k, v) for k, v in trace["headers"] if k.lower() not in _SKIP_HEADERS]
    return Answer(trace["status"], recorded_body(trace), headers, trace.get("reason"))


def frame(message: dict[str, Any]) -> str | bytes | None:
    """The exact frame of one recorded WS message; None for what the server did not send."""
    if message.get("dir") == "client->server" or message.get("kind") not in ("text", "binary"):
        return None
    if message["kind"] == "text":
        return message.get("raw") or orjson.dumps(message["json"]).decode()
    kind = message["event_type"]
    if kind == 3:
        node = message["node_id"].encode()
        body = struct.pack(">II", 3, len(node)) + node + message["text"].encode()
    else:
        payload = (TRACES.parent / message["payload_saved_as"]).read_bytes()
        if kind == 4:
            meta = message["metadata_raw"].encode()
            body = struct.pack(">II", 4, len(meta)) + meta + payload
        else:
            body = bytes.fromhex(message["head_hex"])[:8] + payload
    assert len(body) == message["len"], f"rebuilt frame is {len(body)} bytes"
    return body


def script(relative: str, *, gate: bool = True, cut_after: int | None = None) -> list[Step]:
    """A recorded WS trace as steps: its first frame (the connect `status`, and the
    feature_flags reply when recorded), then a Gate, then the rest; `cut_after` keeps only
    the first N frames."""
    frames = [f for f in (frame(m) for m in load(relative)["messages"]) if f is not None]
    if cut_after is not None:
        frames = frames[:cut_after]
    head = 1
    while (
        head < len(frames) and isinstance(frames[head], str) and '"feature_flags"' in frames[head]
    ):
        head += 1
    steps: list[Step] = list(frames[:head])
    if gate:
        steps.append(Gate())
    return steps + frames[head:]


class ReplayServer:
    def __init__(self) -> None:
        self.routes: dict[tuple[str, str, frozenset[tuple[str, str]]], deque[Answer]] = {}
        self.requests: list[Received] = []
        self.unmatched: list[str] = []
        self.ws_received: list[tuple[str | None, Any]] = []
        self.ws_connects: list[str | None] = []
        self._scripts: dict[str | None, deque[list[Step]]] = defaultdict(deque)
        self._gates: dict[str | None, asyncio.Semaphore] = defaultdict(lambda: asyncio.Semaphore(0))
        self._sockets: set[web.WebSocketResponse] = set()
        self._runner: web.AppRunner | None = None
        self.url = ""

    async def start(self) -> str:
        app = web.Application()
        app.router.add_get("/ws", self._ws)
        app.router.add_get("/api/ws", self._ws)
        app.router.add_route("*", "/{tail:.*}", self._http)
        self._runner = web.AppRunner(app, handle_signals=False)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = self._runner.addresses[0][1]
        self.url = f"http://127.0.0.1:{port}"
        return self.url

    async def close(self) -> None:
        for ws in list(self._sockets):
            await ws.close(code=WSCloseCode.GOING_AWAY)
        if self._runner is not None:
            await self._runner.cleanup()

    # -- registering ------------------------------------------------------------------

    def http(self, relative: str, *, path: str | None = None) -> dict[str, Any]:
        """Answer the trace's request with its recorded answer. Returns the trace."""
        trace = load(relative)
        request = trace["request"]
        self.add(request["method"], path or request["path"], recorded_answer(trace))
        return trace

    def json(self, method: str, path: str, body: Any, status: int = 200) -> None:
        ctype = [("Content-Type", "application/json; charset=utf-8")]
        self.add(method, path, Answer(status, orjson.dumps(body), ctype))

    def add(self, method: str, path_qs: str, answer: Answer) -> None:
        self.routes.setdefault(_key(method, path_qs), deque()).append(answer)

    def ws(self, client_id: str | None, steps: list[Step]) -> None:
        """The steps the next connection of `client_id` plays."""
        self._scripts[client_id].append(steps)

    def release(self, client_id: str | None) -> None:
        self._gates[client_id].release()

    def calls(self, method: str, path: str) -> list[Received]:
        return [r for r in self.requests if r.method == method and r.path == path]

    # -- serving ------------------------------------------------------------------------

    async def _http(self, request: web.Request) -> web.StreamResponse:
        received = Received(request.method, request.path, dict(request.query))
        if request.content_type.startswith("multipart/"):
            received.form = await _form(request)
        elif request.can_read_body:
            raw = await request.read()
            received.json = orjson.loads(raw) if raw else None
        self.requests.append(received)
        if request.method == "POST" and request.path.endswith("/prompt"):
            client_id = (received.json or {}).get("client_id")
            self._gates[client_id].release()
        answers = self.routes.get(_key(request.method, request.path_qs))
        if not answers:
            self.unmatched.append(f"{request.method} {request.path_qs}")
            return web.Response(status=404)
        answer = answers.popleft() if len(answers) > 1 else answers[0]
        return web.Response(
            status=answer.status, reason=answer.reason, body=answer.body, headers=answer.headers
        )

    async def _ws(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        client_id = request.query.get("clientId")
        self.ws_connects.append(client_id)
        self._sockets.add(ws)
        scripts = self._scripts[client_id]
        steps = scripts.popleft() if scripts else []
        player = asyncio.create_task(self._play(ws, client_id, steps))
        try:
            # The socket lives until either side closes it; the script may still be at a
            # Gate then (the client went away), so it is cancelled, not awaited.
            await self._read(ws, client_id)
        finally:
            player.cancel()
            await asyncio.gather(player, return_exceptions=True)
            self._sockets.discard(ws)
        return ws

    async def _play(
        self, ws: web.WebSocketResponse, client_id: str | None, steps: list[Step]
    ) -> None:
        for step in steps:
            if isinstance(step, Gate):
                await self._gates[client_id].acquire()
            elif isinstance(step, Drop):
                await ws.close(code=WSCloseCode.INTERNAL_ERROR)
                return
            elif isinstance(step, bytes):
                await ws.send_bytes(step)
            else:
                await ws.send_str(step)

    async def _read(self, ws: web.WebSocketResponse, client_id: str | None) -> None:
        async for msg in ws:
            self.ws_received.append((client_id, msg.data))


async def _form(request: web.Request) -> dict[str, Any]:
    form: dict[str, Any] = {}
    for name, value in (await request.post()).items():
        if isinstance(value, web.FileField):
            data = value.file.read()
            form[name] = {
                "filename": value.filename,
                "content_type": value.content_type,
                "bytes": len(data),
            }
        else:
            form[name] = value
    return form


def _key(method: str, path_qs: str) -> tuple[str, str, frozenset[tuple[str, str]]]:
    path, _, query = path_qs.partition("?")
    # ComfyUI treats a missing and an empty `subfolder` alike; so does the replay.
    return method.upper(), path, frozenset(parse_qsl(query))
