"""Every recorded HTTP exchange, replayed: the client sends the recorded request and parses
the recorded answer into its typed result (or typed error)."""

from __future__ import annotations

from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import orjson
import pytest

from comfyfleet.comfy import (
    ComfyBadRequest,
    ComfyClient,
    ComfyForbidden,
    ComfyNotFound,
    ComfyRefused,
    ComfyServerError,
    Features,
    HistoryEntry,
    ImageRef,
    LogsRaw,
    PromptAccepted,
    PromptRejected,
    QueueState,
    SystemStats,
)
from comfyfleet.errors import ComfyError
from tests.comfy.conftest import MakeClient
from tests.support.replay import ReplayServer, recorded_body
from tests.support.traces import TRACES, load

HTTP_DIRS = [
    "01_get", "02_api_alias", "03_upload", "04_success_a", "05_workflows", "06_cached_resubmit",
    "07_validation_errors", "08_execution_error", "09_interrupt", "10_queue", "11_two_clients",
    "12_ws", "13_logs", "14_misc",
]  # fmt: skip


def http_traces() -> list[str]:
    found = []
    for folder in HTTP_DIRS:
        for path in sorted((TRACES / folder).rglob("*.json")):
            if "request" in orjson.loads(path.read_bytes()):
                found.append(str(path.relative_to(TRACES)))
    return found


ALL_HTTP = http_traces()
# Routes that ComfyUI does not serve under /api: only reachable as raw requests.
RAW_ONLY = {"/api/internal/logs", "/api/does_not_exist", "/api/internal/logs/subscribe"}


def test_every_http_folder_has_traces() -> None:
    assert len(ALL_HTTP) > 100
    assert {p.split("/")[0] for p in ALL_HTTP} == set(HTTP_DIRS)


async def call(client: ComfyClient, request: dict[str, Any]) -> Any:
    """The client method that makes this recorded request."""
    method, url = request["method"], urlsplit(request["path"])
    path, query = url.path.removeprefix("/api"), dict(parse_qsl(url.query, True))
    body = request.get("json") or {}
    if request["path"].split("?")[0] in RAW_ONLY:
        return await client.request_json(method, url.path, json=request.get("json"))
    match method, path:
        case "POST", "/prompt":
            return await call_submit(client, request, body)
        case "GET", "/prompt":
            return await client.queue_remaining()
        case "GET", "/queue":
            return await client.queue()
        case "POST", "/queue":
            return await (
                client.clear_queue()
                if body.get("clear")
                else client.delete_from_queue(body["delete"])
            )
        case "POST", "/interrupt":
            return await client.interrupt(body.get("prompt_id"))
        case "POST", "/free":
            return await client.free(**body)
        case "GET", "/history":
            items = query.get("max_items")
            return await client.history_all(max_items=int(items) if items else None)
        case "POST", "/history":
            return await (
                client.clear_history()
                if body.get("clear")
                else client.delete_history(body["delete"])
            )
        case "GET", "/view":
            return await call_view(client, query)
        case "POST", "/upload/image":
            return await call_upload(client, request["multipart_form"])
        case "PATCH", "/internal/logs/subscribe":
            return await client.subscribe_logs(body["enabled"])
    return await call_get(client, path)


async def call_submit(client: ComfyClient, request: dict[str, Any], body: dict[str, Any]) -> Any:
    if "raw_body" in request:  # the answer is what matters: the client only sends JSON
        return await client.submit({"1": {}})
    return await client.submit(
        body.get("prompt"),  # type: ignore[arg-type]  # the recorded mistakes included
        prompt_id=body.get("prompt_id"),
        front=body.get("front", False),
        number=body.get("number"),
        extra_data=body.get("extra_data"),
    )


async def call_view(client: ComfyClient, query: dict[str, str]) -> Any:
    ref = ImageRef.model_construct(
        filename=query["filename"], subfolder=query.get("subfolder", ""), type=query["type"]
    )
    return await client.view(ref, preview=query.get("preview"), channel=query.get("channel"))


async def call_upload(client: ComfyClient, form: dict[str, Any]) -> Any:
    if "image" not in form:  # the client cannot leave the field out; replay the answer
        return await client.upload_image(b"", "missing.png")
    image = form["image"]
    return await client.upload_image(
        b"\x89PNG" + b"\0" * (image["bytes"] - 4),
        image["filename"],
        subfolder=form.get("subfolder", ""),
        type=form.get("type", "input"),
        overwrite=form.get("overwrite") == "true",
    )


async def call_get(client: ComfyClient, path: str) -> Any:
    simple = {
        "/system_stats": client.system_stats,
        "/features": client.features,
        "/embeddings": client.embeddings,
        "/extensions": client.extensions,
        "/models": client.models,
        "/internal/logs": client.logs,
        "/internal/logs/raw": client.logs_raw,
        "/internal/folder_paths": client.folder_paths,
        "/object_info": client.object_info,
    }
    if path in simple:
        return await simple[path]()
    head, _, arg = path.rpartition("/")
    if head == "/history":
        return await client.history(arg)
    if head == "/object_info":
        return await client.object_info(arg)
    if head == "/models":
        return await client.models(arg)
    if head == "/internal/files":
        return await client.files(arg)  # type: ignore[arg-type]
    raise AssertionError(f"no client call for {path}")


@pytest.mark.parametrize("relative", ALL_HTTP)
async def test_replay_http(relative: str, replay: ReplayServer, make_client: MakeClient) -> None:
    trace = replay.http(relative)
    request = trace["request"]
    body = request.get("json") or {}
    api = request["path"].startswith("/api/") and request["path"] not in RAW_ONLY
    client_id = body.get("client_id") or body.get("clientId")
    # No silence watchdog here: these tests check one request against its recording, and
    # under load a prompt tracked for 50 ms got cross-checked with an unrecorded GET /queue.
    client = make_client(client_id=client_id, api_prefix="/api" if api else "", silence_s=3600)
    try:
        result = await call(client, request)
    except (ComfyError, ComfyRefused) as exc:
        check_error(trace, exc)
    else:
        assert trace["status"] == 200, f"expected an error for {trace['status']}"
        check_result(trace, result)
    assert replay.unmatched == []
    check_sent(trace, replay)


def check_error(trace: dict[str, Any], exc: Exception) -> None:
    status = trace["status"]
    expected: dict[int, type[Exception]] = {
        500: ComfyServerError, 404: ComfyNotFound, 403: ComfyForbidden, 405: ComfyRefused,
    }  # fmt: skip
    if status == 400:
        is_prompt = trace["request"]["path"].endswith("/prompt")
        expected[400] = PromptRejected if is_prompt else ComfyBadRequest
    assert isinstance(exc, expected[status]), repr(exc)
    assert getattr(exc, "retryable") is (status >= 500)  # noqa: B009
    if isinstance(exc, ComfyServerError):
        assert exc.body == trace["body_text"]
    if isinstance(exc, PromptRejected):
        check_rejection(trace["body"], exc)


def check_rejection(body: dict[str, Any], exc: PromptRejected) -> None:
    assert exc.error_type == body["error"]["type"]
    assert exc.message == body["error"]["message"]
    assert set(exc.node_errors) == set(body["node_errors"])
    for node_id, recorded in body["node_errors"].items():
        node = exc.node_errors[node_id]
        assert node.class_type == recorded["class_type"]
        assert node.error_types == [e["type"] for e in recorded["errors"]]
        assert node.dependent_outputs == recorded["dependent_outputs"]
    assert exc.problem()["node_errors"] == body["node_errors"]


def check_result(trace: dict[str, Any], result: Any) -> None:
    body = trace.get("body")
    match result:
        case PromptAccepted():
            assert result.model_dump(mode="json") == body | {"node_errors": body["node_errors"]}
            assert type(result.number) is type(body["number"])
        case QueueState():
            check_queue(body, result)
        case HistoryEntry():
            (prompt_id,) = body
            assert result.prompt_id == prompt_id
            assert set(result.outputs) == set(body[prompt_id]["outputs"])
        case SystemStats():
            assert result.system.comfyui_version == body["system"]["comfyui_version"]
            assert result.devices[0].type == body["devices"][0]["type"]
        case Features():
            assert result.supports_preview_metadata
            assert result.max_upload_size == 104857600
        case LogsRaw():
            assert [e.m for e in result.entries] == [e["m"] for e in body["entries"]]
        case ImageRef():
            assert result.model_dump() == {
                "filename": body["name"], "subfolder": body["subfolder"], "type": body["type"]
            }  # fmt: skip
        case bytes():
            assert result == recorded_body(trace)
            assert len(result) == trace["body_len"]
        case dict() if trace["request"]["path"].startswith(("/history", "/api/history")):
            assert list(result) == list(body)
            assert all(isinstance(v, HistoryEntry) for v in result.values())
        case int():
            assert result == body["exec_info"]["queue_remaining"]
        case None if trace["request"]["path"].startswith("/history/"):
            assert body == {}  # unknown, pending, running or deleted: ComfyUI answers {}
        case None:
            assert trace["body_len"] == 0
        case _:
            assert result == (body if body is not None else orjson.loads(recorded_body(trace)))


def check_queue(body: dict[str, Any], result: QueueState) -> None:
    assert [i.prompt_id for i in result.running] == [i[1] for i in body["queue_running"]]
    numbers = [i.number for i in result.pending]
    assert numbers == sorted(i[0] for i in body["queue_pending"])


def check_sent(trace: dict[str, Any], replay: ReplayServer) -> None:
    """What the client sent matches the recorded request (ours always carries client_id)."""
    request = trace["request"]
    (sent,) = replay.requests
    assert sent.method == request["method"]
    if "json" in request and request["path"].endswith("/prompt"):
        # Ours always carries client_id, and a prompt_id chosen before the POST.
        recorded = {k: v for k, v in request["json"].items() if k != "client_id"}
        ours = {k: v for k, v in sent.json.items() if k != "client_id"}
        if "prompt_id" not in recorded:
            assert ours.pop("prompt_id")
        if "prompt" not in recorded:  # the no_prompt trace: ours cannot omit it
            ours.pop("prompt")
        assert ours == recorded
        assert sent.json["client_id"] == request["json"].get("client_id", sent.json["client_id"])
    elif request["path"] == "/free":
        assert {k for k, v in sent.json.items() if v} == set(request["json"])
    elif "json" in request:
        assert sent.json == request["json"]
    if "image" in request.get("multipart_form", {}):
        recorded = request["multipart_form"]
        assert sent.form["image"] == recorded["image"]
        for name in ("subfolder", "type", "overwrite"):
            if name in recorded:
                assert sent.form[name] == recorded[name]


def test_trace_index_is_complete() -> None:
    """Guards the list above: a new trace folder must be added to HTTP_DIRS."""
    folders = {p.name for p in TRACES.iterdir() if p.is_dir()} - {"binary_payloads", "15_extra"}
    assert folders == set(HTTP_DIRS)
    assert Path(TRACES / "15_extra" / "extra_checks.json").exists()
    assert load("15_extra/extra_checks.json")["front"]["execution_order"][1] == "F2"
