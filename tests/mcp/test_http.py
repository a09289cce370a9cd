"""`comfyfleet mcp --http` (streamable HTTP behind a bearer token) as a process, driven by the
SDK's client in the current protocol era (2026-07-28: `subscriptions/listen` for changes)
and in the handshake era."""

from __future__ import annotations

import base64
from typing import Any

import aiohttp
import anyio
import mcp_types as types
import pytest
from mcp.shared.exceptions import MCPError

from comfyfleet.cli.fleet import Fleet
from tests.mcp.conftest import Api, http_client, pixels
from tests.mcp.test_stdio import _images, _text


async def test_the_bearer_token_is_required(http_server: str) -> None:
    body = {"jsonrpc": "2.0", "id": 1, "method": "tools/list"}
    async with aiohttp.ClientSession() as session:
        for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": "Basic eDp5"}):
            async with session.post(http_server, json=body, headers=headers) as r:
                assert r.status == 401, headers
                assert r.content_type == "application/problem+json"
                assert r.headers["WWW-Authenticate"].startswith("Bearer")
    # The SDK's client raises from inside its task groups; the 401 is shown above.
    with pytest.raises(ExceptionGroup) as refused:
        async with http_client(http_server, token="wrong") as client:
            await client.list_tools()
    assert refused.group_contains(MCPError)


async def test_tools_calls_progress_and_changes_over_http(
    fleet: Fleet, api: Api, http_server: str
) -> None:
    seen: list[str] = []

    async def on_progress(progress: float, total: float | None, message: str | None) -> None:
        seen.append(message or "")

    async with http_client(http_server) as client:
        assert client.protocol_version == "2026-07-28"
        tools = {t.name: t for t in (await client.list_tools()).tools}
        _, detail = await api.call("GET", "/api/v1/workflows/solid")
        assert tools["solid"].input_schema == detail["params_schema"]

        result = await client.call_tool("solid", {"width": 16, "height": 8, "color": 0x00FF7F})
        assert not result.is_error, _text(result)
        (image,) = _images(result)
        assert pixels(base64.b64decode(image.data)).convert("RGB").getpixel((15, 7)) == (
            0,
            255,
            127,
        )

        args = {"prompt": "p", "steps": 6, "width": 64, "height": 64}
        result = await client.call_tool("txt2img", args, progress_callback=on_progress)
        assert not result.is_error, _text(result)
        assert "step 6 of 6" in seen

        _, solid = await api.call("GET", "/api/v1/workflows/solid")
        async with client.listen(tools_list_changed=True) as changes:
            status, _ = await api.call("POST", "/api/v1/workflows/mcp-http/versions",
                                       {"graph": solid["graph"]})  # fmt: skip
            assert status == 201
            with anyio.fail_after(30):
                event = await changes.__anext__()
        assert type(event).__name__ == "ToolsListChanged"
        assert "mcp-http" in {t.name for t in (await client.list_tools(cache_mode="refresh")).tools}


async def test_cancelling_over_http_cancels_the_job(
    fleet: Fleet, api: Api, http_server: str
) -> None:
    started = anyio.Event()

    async def on_progress(progress: float, total: float | None, message: str | None) -> None:
        if message and message.startswith("step "):
            started.set()

    async with http_client(http_server) as client, anyio.create_task_group() as tasks:

        async def call() -> None:
            args = {"prompt": "http-long", "steps": 150, "width": 64, "height": 64}
            await client.call_tool("txt2img", args, progress_callback=on_progress)

        tasks.start_soon(call)
        with anyio.fail_after(60):
            await started.wait()
        tasks.cancel_scope.cancel()
    _, page = await api.call("GET", "/api/v1/jobs?limit=1")
    job = page["jobs"][0]
    assert job["params"]["prompt"] == "http-long"
    ended = await api.job_ended(job["id"])
    assert ended["status"] == "cancelled"
    assert ended["started_ms"] is not None


async def test_handshake_era_clients_get_list_changed_over_http(api: Api, http_server: str) -> None:
    changed = anyio.Event()

    async def on_message(message: Any) -> None:
        if isinstance(message, types.ToolListChangedNotification):
            changed.set()

    async with http_client(http_server, mode="legacy", message_handler=on_message) as client:
        assert client.protocol_version != "2026-07-28"
        await client.list_tools()
        status, _ = await api.call("DELETE", "/api/v1/workflows/two-outputs")
        assert status == 204
        with anyio.fail_after(30):
            await changed.wait()
        assert "two-outputs" not in {t.name for t in (await client.list_tools()).tools}
