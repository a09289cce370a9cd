"""A headless Chromium driven over the DevTools protocol, just enough to open a page behind
basic auth the way a person does: the page asks, the "user" answers the credentials prompt
(Fetch.authRequired), and the answer is reused for the page's own requests. Credentials in
the URL would not do: Chromium blocks subresources of such a page."""

from __future__ import annotations

import asyncio
import itertools
import os
import re
import shutil
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from comfyfleet.tasks import stop

BROWSERS = ("chromium", "chromium-browser", "google-chrome", "chrome")
CHROMIUM = next((p for p in map(shutil.which, BROWSERS) if p), None)
_LISTENING = re.compile(rb"DevTools listening on (ws://\S+)")


def chromium() -> str:
    """The browser; skipped locally without one, but CI must have it (.ci/run installs it)."""
    if CHROMIUM is None:
        if os.environ.get("CI"):
            pytest.fail("no chromium binary on PATH in CI (.ci/run installs Debian's chromium)")
        pytest.skip("no chromium binary on PATH (CI installs Debian's `chromium`)")
    return CHROMIUM


class Page:
    """One tab, attached in flat mode; answers auth challenges with `credentials`."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse, credentials: tuple[str, str]):
        self._ws = ws
        self._credentials = credentials
        self._ids = itertools.count(1)
        self._replies: dict[int, asyncio.Future[dict[str, Any]]] = {}
        self._session: str | None = None
        self.auth_challenges = 0
        # Every other event DevTools sent (the domains a test enabled: Network, Runtime...).
        self.events: list[dict[str, Any]] = []
        self._reader = asyncio.create_task(self._read())

    async def send(self, method: str, params: dict[str, Any] | None = None) -> dict[str, Any]:
        """Call `method` and return its result."""
        msg_id = next(self._ids)
        reply = self._replies[msg_id] = asyncio.get_running_loop().create_future()
        await self._post(msg_id, method, params)
        return await asyncio.wait_for(reply, timeout=30)

    async def _post(self, msg_id: int, method: str, params: dict[str, Any] | None) -> None:
        msg: dict[str, Any] = {"id": msg_id, "method": method, "params": params or {}}
        if self._session is not None:
            msg["sessionId"] = self._session
        await self._ws.send_json(msg)

    async def open(self) -> None:
        target = await self.send("Target.createTarget", {"url": "about:blank"})
        attached = await self.send(
            "Target.attachToTarget", {"targetId": target["targetId"], "flatten": True}
        )
        self._session = attached["sessionId"]
        await self.send("Fetch.enable", {"handleAuthRequests": True})

    async def goto(self, url: str) -> None:
        await self.send("Page.navigate", {"url": url})

    async def evaluate(self, expression: str) -> Any:
        """The value of a JS expression in the page (a promise is awaited)."""
        params = {"expression": expression, "returnByValue": True, "awaitPromise": True}
        result = await self.send("Runtime.evaluate", params)
        assert "exceptionDetails" not in result, result["exceptionDetails"]
        return result["result"].get("value")

    async def close(self) -> None:
        """Stop reading; a reader that failed (e.g. DevTools refused a call nobody awaited)
        fails the test here rather than going unseen."""
        await stop(self._reader, report=False)
        if not self._reader.cancelled() and (error := self._reader.exception()) is not None:
            raise error

    async def _read(self) -> None:
        async for frame in self._ws:
            msg = frame.json()
            if "id" in msg:
                reply = self._replies.pop(msg["id"], None)  # None: a reply nobody awaits
                if reply is None:
                    assert "error" not in msg, f"devtools: {msg['error']}"
                elif "error" in msg:
                    reply.set_exception(AssertionError(f"devtools: {msg['error']}"))
                else:
                    reply.set_result(msg.get("result", {}))
            elif msg.get("method") == "Fetch.requestPaused":
                request_id = msg["params"]["requestId"]
                await self._post(
                    next(self._ids), "Fetch.continueRequest", {"requestId": request_id}
                )
            elif msg.get("method") == "Fetch.authRequired":
                self.auth_challenges += 1
                user, password = self._credentials
                answer = {"response": "ProvideCredentials", "username": user, "password": password}
                params = {"requestId": msg["params"]["requestId"], "authChallengeResponse": answer}
                await self._post(next(self._ids), "Fetch.continueWithAuth", params)
            elif "method" in msg:
                self.events.append(msg)


@asynccontextmanager
async def browser_page(profile: Path, credentials: tuple[str, str]) -> AsyncIterator[Page]:
    """A fresh headless Chromium (no network beyond what pages ask for) and one open tab."""
    proc = await asyncio.create_subprocess_exec(
        chromium(),
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--disable-component-update",
        "--no-first-run",
        "--disable-dev-shm-usage",
        "--remote-debugging-port=0",
        f"--user-data-dir={profile}",
        "about:blank",
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )
    assert proc.stderr is not None
    drain: asyncio.Task[bytes] | None = None
    try:
        seen = b""
        async with asyncio.timeout(60):
            while (found := _LISTENING.search(seen)) is None:
                line = await proc.stderr.readline()
                assert line, f"chromium exited: {seen.decode(errors='replace')[-2000:]}"
                seen += line
        # Keep reading, so chromium never blocks on a full stderr pipe.
        drain = asyncio.create_task(proc.stderr.read())
        async with (
            aiohttp.ClientSession() as http,
            http.ws_connect(found.group(1).decode(), max_msg_size=0) as ws,
        ):
            page = Page(ws, credentials)
            try:
                await page.open()
                yield page
            finally:
                await page.close()
    finally:
        if proc.returncode is None:
            proc.kill()
        await proc.wait()
        if drain is not None:
            await drain
