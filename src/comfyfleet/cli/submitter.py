"""The client side of `comfyfleet submit`: post a job, show its progress, fetch outputs."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any, TextIO

import aiohttp

from comfyfleet.web.auth import credentials_headers

POLL_S = 0.25
TERMINAL = {"succeeded", "failed", "cancelled"}
BAR_WIDTH = 30


class SubmitError(Exception):
    """The balancer refused the job, the job did not succeed, or it took too long."""


def _problem_text(status: int, body: Any) -> str:
    if isinstance(body, dict):
        return f"HTTP {status}: {body.get('detail') or body.get('title') or body}"
    return f"HTTP {status}: {body}"


def progress_line(job: dict[str, Any]) -> str:
    """One status line: queue position while queued, a step bar while running."""
    status = job.get("status", "?")
    if status == "queued":
        pos = job.get("queue_position")
        return f"queued{'' if pos is None else f' (position {pos + 1})'}"
    progress = job.get("progress")
    if status == "running" and progress and progress.get("max"):
        done = int(BAR_WIDTH * progress["value"] / progress["max"])
        bar = "#" * done + "." * (BAR_WIDTH - done)
        return f"running [{bar}] {progress['value']}/{progress['max']}"
    return status if status != "running" else f"running on {job.get('node_id')}"


class Submitter:
    def __init__(
        self, url: str, *, username: str | None, password: str | None, stream: TextIO
    ) -> None:
        self.url = url.rstrip("/")
        self.headers = credentials_headers(username, password, None)
        self.stream = stream
        self._last = ""

    def _show(self, line: str) -> None:
        if line == self._last:
            return
        if self.stream.isatty():  # redraw in place on a terminal; one line per change in logs
            self.stream.write("\r" + line.ljust(len(self._last)))
        else:
            self.stream.write(line + "\n")
        self.stream.flush()
        self._last = line

    async def _json(self, resp: aiohttp.ClientResponse) -> Any:
        try:
            return await resp.json(content_type=None)
        except (aiohttp.ContentTypeError, ValueError):
            return await resp.text()

    async def run(
        self, body: dict[str, Any], *, out: Path, wait: bool, timeout_s: float
    ) -> list[Path]:
        # Credentials go only to the balancer, never to an output URL elsewhere (a presigned
        # S3 URL refuses a second auth, and a CDN must not see them).
        async with aiohttp.ClientSession() as session:
            try:
                job = await self._post(session, body)
                self.stream.write(f"job {job['id']} accepted\n")
                if not wait:
                    return []
                job = await self._follow(session, job["id"], timeout_s)
                return await self._download(session, job, out)
            except aiohttp.ClientError as exc:
                raise SubmitError(f"cannot reach {self.url}: {exc}") from None

    async def _post(self, session: aiohttp.ClientSession, body: dict[str, Any]) -> Any:
        async with session.post(f"{self.url}/api/v1/jobs", json=body, headers=self.headers) as resp:
            data = await self._json(resp)
            if resp.status != 202:
                raise SubmitError(_problem_text(resp.status, data))
            return data

    async def _follow(self, session: aiohttp.ClientSession, job_id: str, timeout_s: float) -> Any:
        deadline = time.monotonic() + timeout_s
        while True:
            async with session.get(
                f"{self.url}/api/v1/jobs/{job_id}", headers=self.headers
            ) as resp:
                job = await self._json(resp)
                if resp.status != 200:
                    raise SubmitError(_problem_text(resp.status, job))
            self._show(progress_line(job))
            if job["status"] in TERMINAL:
                if self.stream.isatty():
                    self.stream.write("\n")
                if job["status"] != "succeeded":
                    error = job.get("error") or {}
                    raise SubmitError(f"job {job_id} {job['status']}: {error.get('message', '')}")
                return job
            if time.monotonic() > deadline:
                raise SubmitError(f"job {job_id} still {job['status']} after {timeout_s:.0f}s")
            await asyncio.sleep(POLL_S)

    async def _download(
        self, session: aiohttp.ClientSession, job: dict[str, Any], out: Path
    ) -> list[Path]:
        await asyncio.to_thread(out.mkdir, parents=True, exist_ok=True)
        paths: list[Path] = []
        for output in job["outputs"]:
            # The server's filename is only a hint: keep its base name, never its folders.
            name = Path(output["filename"]).name or f"output_{output['index']}.png"
            path = out / f"{job['id'][:8]}_{output['index']}_{name}"
            url = output["url"]
            ours = url.startswith(f"{self.url}/")
            async with session.get(url, headers=self.headers if ours else None) as resp:
                if resp.status != 200:
                    raise SubmitError(_problem_text(resp.status, await self._json(resp)))
                with path.open("wb") as fh:
                    async for chunk in resp.content.iter_chunked(1 << 16):
                        fh.write(chunk)
            paths.append(path)
        return paths
