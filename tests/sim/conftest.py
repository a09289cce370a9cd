"""A real stand-in on a loopback port per test, plus small client helpers."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from comfyfleet.config import SimConfig
from comfyfleet.sim import SIM_STATE, SimState, create_app
from comfyfleet.sim.images import encode_png, solid

DEADLINE_S = 10.0
Message = dict[str, Any]


class Socket:
    """A websocket that keeps every frame it received: JSON as dicts, binary as bytes."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        self.ws = ws
        self.frames: list[Message | bytes] = []

    @property
    def messages(self) -> list[Message]:
        return [f for f in self.frames if isinstance(f, dict)]

    async def receive(self, wait_s: float = DEADLINE_S) -> Message | bytes | None:
        msg = await self.ws.receive(timeout=wait_s)
        if msg.type == aiohttp.WSMsgType.TEXT:
            frame: Message | bytes = json.loads(msg.data)
        elif msg.type == aiohttp.WSMsgType.BINARY:
            frame = msg.data
        else:
            return None
        self.frames.append(frame)
        return frame

    async def until(self, done: Callable[[Message | bytes], bool]) -> Message | bytes:
        """Read frames until one satisfies `done` (fails after the deadline)."""
        async with asyncio.timeout(DEADLINE_S):
            while True:
                frame = await self.receive()
                if frame is None:
                    raise AssertionError("socket closed while waiting")
                if done(frame):
                    return frame

    async def until_done(self, prompt_id: str) -> None:
        """Read until the job's `executing {node: null}` (its "finished" signal)."""
        await self.until(
            lambda f: (
                isinstance(f, dict)
                and f["type"] == "executing"
                and f["data"]["node"] is None
                and f["data"].get("prompt_id") == prompt_id
            )
        )

    async def silent(self, window_s: float = 0.2) -> bool:
        """True when nothing arrives within the window (used to prove an absence)."""
        try:
            msg = await self.ws.receive(timeout=window_s)
        except TimeoutError:
            return True
        return msg.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED)

    async def send_json(self, data: Any) -> None:
        await self.ws.send_str(json.dumps(data))


class Sim:
    def __init__(self, base: str, session: aiohttp.ClientSession, app: web.Application) -> None:
        self.base = base
        self.session = session
        self.app = app
        self.sockets: list[Socket] = []

    @property
    def state(self) -> SimState:
        return self.app[SIM_STATE]

    async def ws(
        self, client_id: str | None = None, flags: dict[str, Any] | None = None, first: bool = True
    ) -> Socket:
        url = f"{self.base}/ws" + (f"?clientId={client_id}" if client_id else "")
        sock = Socket(await self.session.ws_connect(url))
        self.sockets.append(sock)
        if flags is not None:
            await sock.send_json({"type": "feature_flags", "data": flags})
        if first:
            await sock.until(lambda f: isinstance(f, dict) and f["type"] == "status")
            if flags is not None:
                await sock.until(lambda f: isinstance(f, dict) and f["type"] == "feature_flags")
        return sock

    async def request(self, method: str, path: str, **kw: Any) -> tuple[int, Any, Any]:
        """(status, parsed JSON body or raw bytes, headers)."""
        async with self.session.request(method, self.base + path, **kw) as resp:
            raw = await resp.read()
            try:
                body: Any = json.loads(raw) if raw else None
            except ValueError:
                body = raw
            return resp.status, body, resp.headers

    async def post_prompt(self, prompt: Any, **extra: Any) -> tuple[int, Any]:
        status, body, _ = await self.request("POST", "/prompt", json={"prompt": prompt, **extra})
        return status, body

    async def history(self, prompt_id: str) -> Any:
        return (await self.request("GET", f"/history/{prompt_id}"))[1]

    async def wait_history(self, prompt_id: str) -> Any:
        async with asyncio.timeout(DEADLINE_S):
            while True:
                entry = await self.history(prompt_id)
                if entry:
                    return entry[prompt_id]
                await asyncio.sleep(0.01)

    async def wait_for(self, check: Callable[[], bool]) -> None:
        # Polls state owned by the server under test; there is no event to wait on.
        async with asyncio.timeout(DEADLINE_S):
            while True:
                if check():
                    return
                await asyncio.sleep(0.005)

    async def upload(self, name: str, data: bytes, **fields: str) -> tuple[int, Any]:
        form = aiohttp.FormData()
        for key, value in fields.items():
            form.add_field(key, value)
        form.add_field("image", data, filename=name, content_type="image/png")
        status, body, _ = await self.request("POST", "/upload/image", data=form)
        return status, body


async def start_sim(config: SimConfig) -> tuple[web.AppRunner, str]:
    runner = web.AppRunner(create_app(config))
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    return runner, f"http://127.0.0.1:{port}"


@pytest.fixture
def sim_config(tmp_path: Path) -> SimConfig:
    return SimConfig(port=0, node_ms=1, step_ms=1, data_dir=str(tmp_path / "sim"))


@pytest.fixture
async def sim(sim_config: SimConfig) -> AsyncIterator[Sim]:
    runner, base = await start_sim(sim_config)
    async with aiohttp.ClientSession() as session:
        client = Sim(base, session, runner.app)
        try:
            yield client
        finally:
            for sock in client.sockets:
                await sock.ws.close()
    await runner.cleanup()


def small_png(width: int = 8, height: int = 6, color: int = 0x336699) -> bytes:
    return encode_png(solid(width, height, color))
