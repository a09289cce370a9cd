"""Errors are application/problem+json with a stable `type` on both roles, including the
ones aiohttp raises itself; bodies and names are bounded; request ids travel."""

from __future__ import annotations

import io
import json

import pytest
import structlog

from comfyfleet.balancer.schemas import MAX_GRAPH_NODES
from comfyfleet.errors import PROBLEM_BASE
from comfyfleet.web.responses import JSON_BODY_LIMIT, content_disposition, safe_filename
from tests.api.conftest import ADMIN_AUTH, Role


async def _problem(
    role: Role, method: str, path: str, status: int, code: str, **kwargs: object
) -> dict[str, object]:
    got, headers, body = await role.call(method, path, auth=ADMIN_AUTH, **kwargs)
    assert got == status, body
    assert headers["Content-Type"] == "application/problem+json"
    problem: dict[str, object] = json.loads(body)
    assert problem["type"] == PROBLEM_BASE + code
    assert problem["code"] == code
    assert problem["status"] == status
    assert problem["title"]
    assert problem["detail"]
    assert problem["request_id"] == headers["X-Request-ID"]
    assert b"Traceback" not in body
    return problem


async def test_aiohttp_errors_are_problems(balancer: Role, node: Role) -> None:
    for role in (balancer, node):
        await _problem(role, "GET", "/api/v1/nowhere", 404, "not-found")
        problem = await _problem(role, "PUT", "/healthz", 405, "method-not-allowed")
        assert problem["detail"]
        await _problem(role, "GET", "/api/v1/nowhere", 404, "not-found")
    status, headers, _ = await balancer.call("GET", "/api/v1/jobs")
    assert status == 401
    assert headers["Content-Type"] == "application/problem+json"


async def test_bodies_are_bounded_and_checked(balancer: Role) -> None:
    # A stream: aiohttp warns that a large bytes body could stall its event loop.
    big = io.BytesIO(b'{"graph": {"1": "' + b"x" * JSON_BODY_LIMIT + b'"}}')
    await _problem(balancer, "POST", "/api/v1/jobs", 413, "payload-too-large", data=big)
    await _problem(balancer, "POST", "/api/v1/jobs", 400, "bad-request", data=b"{nope")
    await _problem(balancer, "POST", "/api/v1/jobs", 400, "bad-request", data=b"")
    problem = await _problem(
        balancer, "POST", "/api/v1/jobs", 422, "validation", json={"workflow": "txt2img", "x": 1}
    )
    assert problem["errors"]
    graph = {str(i): {"class_type": "EmptyImage", "inputs": {}} for i in range(MAX_GRAPH_NODES + 1)}
    await _problem(balancer, "POST", "/api/v1/jobs", 422, "validation", json={"graph": graph})
    await _problem(balancer, "POST", "/api/v1/jobs", 422, "param-invalid",
                   json={"workflow": "txt2img", "params": {"steps": 10**9}})  # fmt: skip
    for coerced in ({"priority": False}, {"max_attempts": "3"}, {"timeout_ms": True}):
        problem = await _problem(balancer, "POST", "/api/v1/jobs", 422, "validation",
                                 json={"workflow": "solid", **coerced})  # fmt: skip
        assert next(iter(coerced)) in json.dumps(problem["errors"])
    await _problem(balancer, "POST", "/api/v1/jobs", 404, "workflow-unknown",
                   json={"workflow": "no-such-flow"})  # fmt: skip
    await _problem(balancer, "POST", "/api/v1/apikeys", 422, "validation",
                   json={"name": "../../etc/passwd\n"})  # fmt: skip


async def test_ids_and_names_from_paths_are_checked(balancer: Role, node: Role) -> None:
    await _problem(balancer, "GET", "/api/v1/nodes/a:control", 404, "not-found")
    await _problem(balancer, "GET", "/api/v1/jobs/..%2F..%2Fx", 404, "not-found")
    await _problem(balancer, "GET", "/api/v1/jobs/" + "0" * 32 + "/outputs/-1", 404, "not-found")
    for folder in ("../../etc", ".hidden", "a/b"):
        await _problem(node, "GET", f"/api/v1/comfy/models?folder={folder}", 400, "bad-request")
    for node_class in ("..", "a/b", "x?y", "%2e%2e"):
        await _problem(node, "GET", "/api/v1/comfy/object_info", 400, "bad-request",
                       params={"node_class": node_class})  # fmt: skip
    await _problem(node, "POST", "/api/v1/comfy/interrupt", 422, "validation",
                   json={"prompt_id": 5})  # fmt: skip


@pytest.mark.parametrize(
    ("raw", "safe"),
    [
        ("ComfyUI_00001_.png", "ComfyUI_00001_.png"),
        ("../../etc/passwd", "passwd"),
        ('a"; evil=1\r\nX: y.png', "a_evil_1_X_y.png"),
        ("..", "output"),
        ("", "output"),
        ("C:\\dir\\x.webp", "x.webp"),
    ],
)
def test_file_names_are_made_safe(raw: str, safe: str) -> None:
    assert safe_filename(raw) == safe
    assert content_disposition(raw) == f'inline; filename="{safe}"'


async def test_request_ids_are_echoed_and_logged(balancer: Role) -> None:
    # merge_contextvars: as in production, the middleware's bound request id joins each line.
    with structlog.testing.capture_logs([structlog.contextvars.merge_contextvars]) as logs:
        status, headers, _ = await balancer.call(
            "POST", "/api/v1/apikeys", auth=ADMIN_AUTH, json={"name": "rid"},
            headers={"X-Request-ID": "trace-42"},
        )  # fmt: skip
    assert status == 201
    assert headers["X-Request-ID"] == "trace-42"
    assert [e["request_id"] for e in logs if e["event"] == "apikey_created"] == ["trace-42"]
    # An id too long to be one is replaced, not echoed (it goes into every log line).
    status, headers, _ = await balancer.call("GET", "/healthz", headers={"X-Request-ID": "x" * 200})
    assert status == 200
    assert len(headers["X-Request-ID"]) == 32


async def test_unknown_query_parameters_are_refused_by_name(balancer: Role, node: Role) -> None:
    problem = await _problem(balancer, "GET", "/api/v1/jobs?wiat=5&status=queued", 400,
                             "bad-request")  # fmt: skip
    assert "'wiat'" in str(problem["detail"])
    assert "status" in str(problem["detail"])  # and says what the operation takes
    problem = await _problem(node, "GET", "/api/v1/node?verbose=1", 400, "bad-request")
    assert "takes: none" in str(problem["detail"])
    status, _, _ = await balancer.call("GET", "/api/v1/jobs?status=queued&limit=5",
                                       auth=ADMIN_AUTH)  # fmt: skip
    assert status == 200  # documented parameters pass
    status, _, _ = await balancer.call("GET", "/openapi.json?x=1", auth=ADMIN_AUTH)
    assert status == 200  # the docs are not operations: left alone


async def test_no_response_may_be_sniffed(balancer: Role, node: Role) -> None:
    for role, path, auth in ((balancer, "/api/v1/jobs", ADMIN_AUTH), (balancer, "/healthz", None),
                             (balancer, "/api/v1/jobs", None), (node, "/nowhere", ADMIN_AUTH),
                             (node, "/docs", ADMIN_AUTH)):  # fmt: skip
        _, headers, _ = await role.call("GET", path, auth=auth)
        assert headers["X-Content-Type-Options"] == "nosniff", path
