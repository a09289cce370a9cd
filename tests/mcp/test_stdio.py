"""`comfyfleet mcp` over stdio, launched as desktop clients launch it, with the SDK's client
in the handshake era (what desktop clients speak): tools match the workflows API, a call
returns pixels that match its params, progress, cancel, list_changed, errors, resources."""

from __future__ import annotations

import asyncio
import base64
import io
import json
import sys
from typing import Any

import anyio
import mcp_types as types
from PIL import Image

from comfyfleet.cli.fleet import Fleet
from tests.mcp.conftest import Api, mcp_argv, mcp_env, pixels, stdio_client
from tests.support.waiting import until

LEGACY = {"mode": "legacy"}


def _images(result: types.CallToolResult) -> list[types.ImageContent]:
    return [c for c in result.content if isinstance(c, types.ImageContent)]


def _links(result: types.CallToolResult) -> list[types.ResourceLink]:
    return [c for c in result.content if isinstance(c, types.ResourceLink)]


def _text(result: types.CallToolResult) -> str:
    return " ".join(c.text for c in result.content if isinstance(c, types.TextContent))


async def test_tools_are_the_workflows_with_their_params_schemas(fleet: Fleet, api: Api) -> None:
    _, listing = await api.call("GET", "/api/v1/workflows")
    async with stdio_client(fleet, **LEGACY) as client:
        tools = {t.name: t for t in (await client.list_tools()).tools}
    assert {"run_graph", "get_job", "cancel_job", "list_workflows", "upload_image"} <= set(tools)
    for workflow in listing["workflows"]:
        _, detail = await api.call("GET", f"/api/v1/workflows/{workflow['name']}")
        tool = tools[workflow["name"]]
        assert tool.input_schema == detail["params_schema"], workflow["name"]
        assert workflow["version"] in (tool.description or "")
    solid = tools["solid"].input_schema["properties"]
    assert solid["width"] == {"description": "Width in pixels.", "type": "integer",
                              "minimum": 1, "maximum": 4096, "default": 512}  # fmt: skip


async def test_solid_returns_an_image_whose_pixels_match_the_params(fleet: Fleet) -> None:
    async with stdio_client(fleet, "--preview-px", "64", **LEGACY) as client:
        args = {"width": 200, "height": 100, "color": 0x3366CC}
        result = await client.call_tool("solid", args)
        assert not result.is_error, _text(result)
        (image,) = _images(result)
        preview = pixels(base64.b64decode(image.data))
        assert preview.size == (64, 32)  # downscaled within --preview-px, aspect kept
        assert preview.convert("RGB").getpixel((10, 10)) == (0x33, 0x66, 0xCC)
        (link,) = _links(result)
        assert link.uri.startswith("comfyfleet://jobs/")
        assert link.mime_type == "image/png"
        full = await client.read_resource(link.uri)
        (blob,) = full.contents
        assert isinstance(blob, types.BlobResourceContents)
        original = pixels(base64.b64decode(blob.blob))
        assert original.size == (200, 100)
        assert original.convert("RGB").getpixel((199, 99)) == (0x33, 0x66, 0xCC)
        assert result.structured_content is not None
        assert result.structured_content["status"] == "succeeded"
        assert result.structured_content["params"]["color"] == 0x3366CC


async def test_progress_notifications_follow_the_steps(fleet: Fleet) -> None:
    seen: list[tuple[float, float | None, str | None]] = []

    async def on_progress(progress: float, total: float | None, message: str | None) -> None:
        seen.append((progress, total, message))

    async with stdio_client(fleet, **LEGACY) as client:
        result = await client.call_tool(
            "txt2img", {"prompt": "a fox", "steps": 12, "width": 64, "height": 64},
            progress_callback=on_progress,
        )  # fmt: skip
    assert not result.is_error, _text(result)
    steps = [m for _, _, m in seen if m and m.startswith("step ")]
    assert steps == [f"step {i} of 12" for i in range(1, 13)] or (
        # Progress events are coalesced to 10 a second by the node: steps may be skipped,
        # never repeated or reordered, and the last is always there.
        steps[-1] == "step 12 of 12" and len(set(steps)) == len(steps)
    ), steps
    values = [p for p, _, _ in seen]
    assert values == sorted(values)
    assert len(set(values)) == len(values)  # strictly increasing, as MCP asks
    last = seen[-1]
    assert last[1] == last[0]  # the last step: done == total


async def test_cancelling_the_call_cancels_the_job(fleet: Fleet, api: Api) -> None:
    started = anyio.Event()

    async def on_progress(progress: float, total: float | None, message: str | None) -> None:
        if message and message.startswith("step "):
            started.set()

    async with stdio_client(fleet, **LEGACY) as client:
        async with anyio.create_task_group() as tasks:

            async def call() -> None:
                args = {"prompt": "long", "steps": 150, "width": 64, "height": 64}
                await client.call_tool("txt2img", args, progress_callback=on_progress)

            tasks.start_soon(call)
            with anyio.fail_after(60):
                await started.wait()
            tasks.cancel_scope.cancel()  # the SDK sends notifications/cancelled
        _, page = await api.call("GET", "/api/v1/jobs?limit=1")
        job = page["jobs"][0]
        assert job["params"]["prompt"] == "long"
        ended = await api.job_ended(job["id"])
    assert ended["status"] == "cancelled"
    assert ended["started_ms"] is not None  # it was running: cancelled mid-run, not queued


async def test_bad_arguments_are_tool_errors_naming_the_param(fleet: Fleet) -> None:
    async with stdio_client(fleet, **LEGACY) as client:
        result = await client.call_tool("solid", {"width": 99999})
        assert result.is_error
        assert "'width'" in _text(result)
        assert "4096" in _text(result)
        result = await client.call_tool("solid", {"colour": 1})
        assert result.is_error
        assert "'colour'" in _text(result)
        result = await client.call_tool("get_job", {"job_id": "../x"})
        assert result.is_error
        assert "'job_id'" in _text(result)
        result = await client.call_tool("run_graph", {"graph": {"1": {"class_type": "Nope",
                                                                       "inputs": {}}}})  # fmt: skip
        assert result.is_error, _text(result)


async def test_publish_and_rollback_change_the_tools(fleet: Fleet, api: Api) -> None:
    changed = anyio.Event()
    notes: list[str] = []

    async def on_message(message: Any) -> None:
        if isinstance(message, types.ToolListChangedNotification):
            notes.append("tools")
            changed.set()

    _, solid = await api.call("GET", "/api/v1/workflows/solid")
    async with stdio_client(fleet, message_handler=on_message, **LEGACY) as client:
        assert "mcp-solid" not in {t.name for t in (await client.list_tools()).tools}
        bare = {"graph": solid["graph"], "params": {"params": {}}}
        status, v1 = await api.call("POST", "/api/v1/workflows/mcp-solid/versions", bare)
        assert status == 201, v1
        with anyio.fail_after(30):
            await changed.wait()
        tools = {t.name: t for t in (await client.list_tools()).tools}
        assert tools["mcp-solid"].input_schema["properties"] == {}

        declaration = {"params": {"color": {"type": "integer", "default": 255,
                       "bind": [{"node": "Solid Color", "input": "color"}]}}}  # fmt: skip
        changed = anyio.Event()
        status, v2 = await api.call("POST", "/api/v1/workflows/mcp-solid/versions",
                                    {"graph": solid["graph"], "params": declaration})  # fmt: skip
        assert status == 201, v2
        with anyio.fail_after(30):
            await changed.wait()
        tools = {t.name: t for t in (await client.list_tools()).tools}
        assert set(tools["mcp-solid"].input_schema["properties"]) == {"color"}

        changed = anyio.Event()
        status, _ = await api.call("POST", "/api/v1/workflows/mcp-solid/rollback",
                                   {"version": v1["version"]})  # fmt: skip
        assert status == 200
        with anyio.fail_after(30):
            await changed.wait()
        tools = {t.name: t for t in (await client.list_tools()).tools}
        assert v1["version"] in (tools["mcp-solid"].description or "")
        assert tools["mcp-solid"].input_schema["properties"] == {}
    assert notes == ["tools"] * 3


async def test_a_long_job_answers_its_id_for_get_job(fleet: Fleet) -> None:
    async with stdio_client(fleet, "--wait-s", "0.5", **LEGACY) as client:
        result = await client.call_tool("txt2img", {"prompt": "slow", "steps": 60,
                                                    "width": 64, "height": 64})  # fmt: skip
        assert not result.is_error, _text(result)
        assert result.structured_content is not None
        job_id = result.structured_content["job_id"]
        assert result.structured_content["status"] in ("queued", "running")
        assert "get_job" in _text(result)

        async def poll() -> types.CallToolResult:
            return await client.call_tool("get_job", {"job_id": job_id, "wait_s": 30})

        done = await until(poll, lambda r: (r.structured_content or {}).get("status")
                           == "succeeded", timeout_s=60, what="job end")  # fmt: skip
        assert len(_images(done)) == 1


async def test_upload_an_image_and_run_a_workflow_on_it(fleet: Fleet) -> None:
    source = io.BytesIO()
    Image.new("RGB", (24, 16), (10, 200, 40)).save(source, format="PNG")
    async with stdio_client(fleet, **LEGACY) as client:
        uploaded = await client.call_tool("upload_image", {"data": base64.b64encode(
            source.getvalue()).decode(), "filename": "green.png"})  # fmt: skip
        assert not uploaded.is_error, _text(uploaded)
        assert uploaded.structured_content is not None
        name = uploaded.structured_content["name"]
        result = await client.call_tool("invert", {"image": name})
        assert not result.is_error, _text(result)
        (image,) = _images(result)
        inverted = pixels(base64.b64decode(image.data)).convert("RGB")
        assert inverted.size == (24, 16)
        assert inverted.getpixel((3, 3)) == (245, 55, 215)
        refused = await client.call_tool("upload_image", {"data": "not base64!"})
        assert refused.is_error
        assert "'data'" in _text(refused)


async def test_workflows_and_outputs_are_resources(fleet: Fleet, api: Api) -> None:
    _, solid = await api.call("GET", "/api/v1/workflows/solid")
    async with stdio_client(fleet, **LEGACY) as client:
        listed = {str(r.uri) for r in (await client.list_resources()).resources}
        assert {"comfyfleet://workflows/solid", "comfyfleet://workflows/solid/api.json",
                "comfyfleet://workflows/solid/ui.json",
                "comfyfleet://workflows/solid/params.json"} <= listed  # fmt: skip
        (api_json,) = (await client.read_resource("comfyfleet://workflows/solid/api.json")).contents
        assert isinstance(api_json, types.TextResourceContents)
        assert json.loads(api_json.text) == solid["graph"]
        (params,) = (
            await client.read_resource("comfyfleet://workflows/solid/params.json")
        ).contents
        assert isinstance(params, types.TextResourceContents)
        assert set(json.loads(params.text)["params"]) == set(solid["params"])
        templates = (await client.list_resource_templates()).resource_templates
        assert "comfyfleet://jobs/{job_id}/outputs/{index}" in {t.uri_template for t in templates}


async def test_wrong_credentials_are_refused_at_start(fleet: Fleet) -> None:
    env = mcp_env()
    env["API_PASSWORD"] = "wrong"
    proc = await asyncio.create_subprocess_exec(
        sys.executable, *mcp_argv(fleet), env=env, stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await asyncio.wait_for(proc.communicate(), timeout=60)
    assert proc.returncode == 2
    assert out == b""  # nothing on the protocol channel
    assert b"refused" in err
    assert b"401" in err or b"unauthorized" in err


async def test_http_without_a_token_does_not_start(fleet: Fleet) -> None:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, *mcp_argv(fleet, "--http", "--port", "0"), env=mcp_env(),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    _, err = await asyncio.wait_for(proc.communicate(), timeout=60)
    assert proc.returncode == 2
    assert b"--http-token" in err
