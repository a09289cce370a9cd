"""The balancer's public API as `comfyfleet mcp` uses it: one aiohttp session, the caller's
credentials, problem+json answers turned into `ApiError`s that keep the code and the param.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import aiohttp
import orjson

# Connect and whole-request bounds for ordinary calls (s); event streams have no total bound.
CONNECT_TIMEOUT_S = 10.0
REQUEST_TIMEOUT_S = 60.0


class ApiError(Exception):
    """The balancer refused (4xx/5xx) or could not be reached (`status` 0)."""

    def __init__(self, status: int, code: str, detail: str, param: str | None = None) -> None:
        super().__init__(detail)
        self.status = status
        self.code = code
        self.detail = detail
        self.param = param

    def __str__(self) -> str:
        return f"{self.code}: {self.detail}" if self.code else self.detail


@dataclass(frozen=True)
class Listing:
    """The workflows listing and its ETag (None: not modified since the ETag sent)."""

    etag: str
    workflows: list[dict[str, Any]] | None


class BalancerClient:
    """Calls to one balancer. Open with `async with`."""

    def __init__(self, url: str, headers: dict[str, str]) -> None:
        self.url = url.rstrip("/")
        self._headers = headers
        self._session: aiohttp.ClientSession | None = None

    async def __aenter__(self) -> BalancerClient:
        self._session = aiohttp.ClientSession(
            headers=self._headers,
            timeout=aiohttp.ClientTimeout(total=None, connect=CONNECT_TIMEOUT_S),
        )
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._session is not None:
            await self._session.close()

    @property
    def session(self) -> aiohttp.ClientSession:
        assert self._session is not None, "use BalancerClient in `async with`"
        return self._session

    async def _call(
        self, method: str, path: str, *, timeout_s: float = REQUEST_TIMEOUT_S, **kwargs: Any
    ) -> tuple[int, dict[str, str], bytes]:
        try:
            async with self.session.request(
                method, self.url + path, timeout=aiohttp.ClientTimeout(total=timeout_s), **kwargs
            ) as resp:
                body = await resp.read()
                if resp.status >= 400:
                    raise _error(resp.status, body)
                return resp.status, dict(resp.headers), body
        except aiohttp.ClientError as exc:
            raise ApiError(
                0, "unreachable", f"cannot reach the balancer at {self.url}: {exc}"
            ) from None
        except TimeoutError:
            raise ApiError(
                0, "timeout", f"the balancer at {self.url} did not answer in time"
            ) from None

    async def json(self, method: str, path: str, body: Any = None, **kwargs: Any) -> Any:
        """The JSON answer of one call (None for an empty body)."""
        if body is not None:
            kwargs["json"] = body
        _, _, raw = await self._call(method, path, **kwargs)
        return orjson.loads(raw) if raw else None

    async def workflows(self, etag: str | None = None) -> Listing:
        """The listing; `workflows` None when it did not change since `etag`."""
        headers = {"If-None-Match": etag} if etag else {}
        status, got, raw = await self._call("GET", "/api/v1/workflows", headers=headers)
        tag = next((v for k, v in got.items() if k.lower() == "etag"), "")
        if status == 304:
            return Listing(tag, None)
        return Listing(tag, orjson.loads(raw)["workflows"])

    async def output(self, job_id: str, index: int) -> tuple[str, bytes]:
        """(content type, bytes) of one output of a finished job."""
        _, headers, raw = await self._call("GET", f"/api/v1/jobs/{job_id}/outputs/{index}")
        kind = next((v for k, v in headers.items() if k.lower() == "content-type"), "")
        return kind.split(";")[0].strip() or "application/octet-stream", raw

    async def upload(self, data: bytes, filename: str) -> Any:
        form = aiohttp.FormData()
        form.add_field("image", data, filename=filename)
        return await self.json("POST", "/api/v1/inputs", data=form)

    async def events(self, job_id: str) -> AsyncIterator[tuple[str, dict[str, Any]]]:
        """(event type, data) of a job's live event stream (SSE) until it ends."""
        try:
            async with self.session.get(
                f"{self.url}/api/v1/jobs/{job_id}/events",
                timeout=aiohttp.ClientTimeout(total=None, sock_read=None),
            ) as resp:
                if resp.status >= 400:
                    raise _error(resp.status, await resp.read())
                kind, data = "message", b""
                async for line in resp.content:
                    line = line.rstrip(b"\r\n")
                    if not line:
                        if data:
                            yield kind, _object(data)
                        kind, data = "message", b""
                    elif line.startswith(b"event:"):
                        kind = line[6:].strip().decode()
                    elif line.startswith(b"data:"):
                        data += line[5:].strip()
        except aiohttp.ClientError as exc:
            raise ApiError(0, "unreachable", f"lost the job's event stream: {exc}") from None


def _object(raw: bytes) -> dict[str, Any]:
    try:
        value = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return {}
    return value if isinstance(value, dict) else {}


def _error(status: int, body: bytes) -> ApiError:
    problem = _object(body)
    detail = str(
        problem.get("detail") or problem.get("title") or body[:200].decode(errors="replace")
    )
    param = problem.get("param")
    return ApiError(status, str(problem.get("code") or f"http-{status}"), detail,
                    param if isinstance(param, str) else None)  # fmt: skip
