"""Tenants: two API keys on one fleet. Key A runs a job and uploads an input; a walk over
EVERY route of both roles then proves key B cannot see or touch them: a route naming A's
job answers B exactly what an unknown job answers (404), no answer to B names A's job or
input, and the admin sees everything. Every route must be classified in ROUTES: a new
route without a classification fails the walk, so isolation is decided for it."""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from comfyfleet.balancer.appkeys import JOBS, NODES
from comfyfleet.editor.frontend import PREFIX as FRONTEND
from comfyfleet.models.node import NodeInfo
from comfyfleet.node.appkeys import WORKER
from comfyfleet.node.worker import JobControl
from comfyfleet.web.auth import bearer_header
from tests.api.conftest import ADMIN_AUTH, Role
from tests.inputs.samples import png
from tests.support.waiting import until

# How each route treats another owner's things:
#   job      takes a {job_id}: B gets the unknown-job answer, A and the admin do not
#   listing  lists jobs: B's list holds none of A's, the admin's and A's hold A's job
#   admin    the admin's alone: B gets 403
#   shared   carries no tenant's jobs or inputs (fleet, workflows, health, docs)
#   node-jobs / interrupt  the node's job list and prompt interrupt (see their checks)
#   comfy-job  a native ComfyUI route naming a prompt: B gets ComfyUI's answer for an
#            unknown prompt (`{}`), A and the admin see it (tests/native has the rest)
# Whatever the kind, no answer to B may name A's job id or input id.
ROUTES: dict[tuple[str, str], str] = {
    ("POST", "/api/v1/jobs"): "shared",  # submitting: see test_inputs_and_idempotency_*
    ("GET", "/api/v1/jobs"): "listing",
    ("GET", "/api/v1/jobs/{job_id}"): "job",
    ("DELETE", "/api/v1/jobs/{job_id}"): "job",
    ("GET", "/api/v1/jobs/{job_id}/outputs/{index}"): "job",
    ("GET", "/api/v1/jobs/{job_id}/events"): "job",
    ("GET", "/api/v1/jobs/{job_id}/preview"): "job",
    ("GET", "/api/v1/jobs/{job_id}/logs"): "job",
    ("POST", "/api/v1/inputs"): "shared",
    ("GET", "/api/v1/usage"): "listing",
    ("GET", "/api/v1/workflows"): "shared",
    ("GET", "/api/v1/workflows/{name}"): "shared",
    ("POST", "/api/v1/workflows/{name}/versions"): "admin",  # without the workflows scope
    ("GET", "/api/v1/workflows/{name}/versions"): "shared",
    ("GET", "/api/v1/workflows/{name}/versions/{version}"): "shared",
    ("POST", "/api/v1/workflows/{name}/rollback"): "admin",
    ("DELETE", "/api/v1/workflows/{name}"): "admin",
    ("GET", "/api/v1/nodes"): "shared",
    ("GET", "/api/v1/nodes/{node_id}"): "listing",  # the node's job ids
    ("POST", "/api/v1/nodes/{node_id}/drain"): "shared",
    ("POST", "/api/v1/nodes/{node_id}/resume"): "shared",
    ("POST", "/api/v1/apikeys"): "admin",
    ("GET", "/api/v1/apikeys"): "admin",
    ("DELETE", "/api/v1/apikeys/{key_id}"): "admin",
    ("GET", "/api/v1/tenants"): "admin",
    ("GET", "/api/v1/tenants/{owner}"): "admin",
    ("PATCH", "/api/v1/tenants/{owner}"): "admin",
    ("GET", "/api/v1/alerts"): "admin",
    ("GET", "/healthz"): "shared",
    ("GET", "/readyz"): "shared",
    ("GET", "/metrics"): "shared",
    ("GET", "/openapi.json"): "shared",
    ("GET", "/docs"): "shared",
    ("GET", "/docs/{asset}"): "shared",
    # The editor (editor/): its pages, and user data kept per principal (tests/editor).
    **{
        (method, prefix + path): "shared"
        for prefix in ("", "/api")
        for method, path in (
            ("GET", "/users"),
            ("POST", "/users"),
            ("GET", "/settings"),
            ("POST", "/settings"),
            ("GET", "/settings/{id}"),
            ("POST", "/settings/{id}"),
            ("GET", "/userdata"),
            ("GET", "/v2/userdata"),
            ("GET", "/userdata/{file}"),
            ("POST", "/userdata/{file}"),
            ("DELETE", "/userdata/{file}"),
            ("POST", "/userdata/{file}/move/{dest}"),
            ("GET", "/i18n"),
            ("GET", "/workflow_templates"),
        )
    },
    ("GET", "/templates/index.json"): "shared",
    ("GET", "/api/workflow_templates/fleet/{file}"): "shared",
    ("GET", "/extensions/comfyfleet"): "shared",
    # ComfyUI's own API (balancer/native/): whatever it answers B never names A's job;
    # tests/native/test_isolation.py walks its prompt routes with two keys in depth.
    **{
        (method, prefix + path): "shared"
        for prefix in ("", "/api")
        for method, path in (
            ("GET", "/ws"),
            ("POST", "/prompt"),
            ("GET", "/prompt"),
            ("GET", "/queue"),
            ("POST", "/queue"),
            ("POST", "/interrupt"),
            ("GET", "/history"),
            ("POST", "/history"),
            ("GET", "/view"),
            ("POST", "/upload/image"),
            ("POST", "/upload/mask"),
            ("GET", "/object_info"),
            ("GET", "/object_info/{node_class}"),
            ("GET", "/embeddings"),
            ("GET", "/models"),
            ("GET", "/models/{folder}"),
            ("GET", "/extensions"),
            ("GET", "/features"),
            ("GET", "/system_stats"),
            ("POST", "/free"),
        )
    },
    ("GET", "/history/{prompt_id}"): "comfy-job",
    ("GET", "/api/history/{prompt_id}"): "comfy-job",
    ("GET", "/"): "shared",
    # the node's own API
    ("GET", "/api/v1/node"): "node-jobs",
    ("POST", "/api/v1/node/drain"): "shared",
    ("POST", "/api/v1/node/resume"): "shared",
    ("GET", "/api/v1/comfy/system_stats"): "shared",
    ("GET", "/api/v1/comfy/object_info"): "shared",
    ("GET", "/api/v1/comfy/models"): "shared",
    ("GET", "/api/v1/comfy/queue"): "admin",  # every tenant's prompts
    ("GET", "/api/v1/comfy/history"): "admin",
    ("POST", "/api/v1/comfy/interrupt"): "interrupt",
    ("POST", "/api/v1/comfy/free"): "shared",
}
PROMPT = "prompt-of-a"
NODE_ID = "isolation-node"  # the ComfyUI prompt id the node's job of A runs as


class Tenant:
    def __init__(self, role: Role, key: dict[str, str]) -> None:
        self.auth = bearer_header(key["key"])
        self.owner = f"apikey:{key['id']}"
        self.key_id = key["id"]


async def make_key(balancer: Role, name: str) -> Tenant:
    status, _, body = await balancer.call("POST", "/api/v1/apikeys", auth=ADMIN_AUTH,
                                          json={"name": name})  # fmt: skip
    assert status == 201, body
    return Tenant(balancer, json.loads(body))


async def upload(balancer: Role, auth: str, data: bytes) -> dict[str, Any]:
    form = aiohttp.FormData()
    form.add_field("image", data, filename="x.png", content_type="image/png")
    status, _, body = await balancer.call("POST", "/api/v1/inputs", auth=auth, data=form)
    assert status == 201, body
    up: dict[str, Any] = json.loads(body)
    return up


async def run_job(balancer: Role, auth: str, **extra: Any) -> dict[str, Any]:
    job = {"workflow": "solid", "params": {"width": 8, "height": 8}, **extra}
    status, _, body = await balancer.call("POST", "/api/v1/jobs?wait=30", auth=auth, json=job)
    assert status == 200, body
    view: dict[str, Any] = json.loads(body)
    assert view["status"] == "succeeded", view
    return view


@pytest.fixture
async def a_and_b(balancer: Role, node: Role) -> AsyncIterator[tuple[Tenant, Tenant, str, str]]:
    """Key A with a finished job and an upload, key B with a job of its own; A's job id
    and input id."""
    a, b = await make_key(balancer, "team-a"), await make_key(balancer, "team-b")
    job = await run_job(balancer, a.auth)
    await run_job(balancer, b.auth)
    up = await upload(balancer, a.auth, png(seed=11))
    # The node shows A's job as running there, with a prompt in its ComfyUI.
    worker = node.app[WORKER]
    worker.controls[job["id"]] = JobControl(owner=a.owner, prompt_id=PROMPT)
    worker.tasks[job["id"]] = asyncio.create_task(asyncio.Event().wait())
    # The balancer's node detail shows it held by a node.
    store = balancer.app[JOBS]
    await store.redis.sadd(store.keys.owned(NODE_ID), job["id"])
    await balancer.app[NODES].heartbeat(NodeInfo(node_id=NODE_ID))
    yield a, b, job["id"], up["id"]
    worker.tasks.pop(job["id"]).cancel()
    worker.controls.pop(job["id"], None)


def _routes(role: Role) -> list[tuple[str, str]]:
    return sorted({(r.method, r.resource.canonical) for r in role.app.router.routes()
                   if r.method != "HEAD" and r.resource is not None})  # fmt: skip


def _static(role: Role) -> set[str]:
    """The editor's files (the frontend package's folders and top-level files: no tenant's
    data); which they are depends on the package version."""
    resources = role.app.router.resources()
    return {
        r.canonical
        for r in resources
        if isinstance(r, web.StaticResource) or (r.name or "").startswith(FRONTEND)
    }


def _path(canonical: str, job_id: str, owner: str) -> str:
    # The one node's detail lists its jobs; its drain would stop it: that takes "nobody".
    node_id = NODE_ID if canonical == "/api/v1/nodes/{node_id}" else "nobody"
    samples = {
        "job_id": job_id,
        "index": "0",
        "node_id": node_id,
        "name": "solid",
        "asset": "swagger-ui.css",
        "key_id": "0" * 12,
        "version": "1",
        "owner": owner,
        "id": "Comfy.Locale",
        "file": "walk.json",
        "dest": "walked.json",
        "prompt_id": job_id,
        "node_class": "SaveImage",
        "folder": "checkpoints",
    }
    return re.sub(r"\{(\w+)\}", lambda m: samples[m.group(1)], canonical)  # fmt: skip


def _problem(body: bytes) -> dict[str, Any]:
    problem: dict[str, Any] = json.loads(body)
    problem.pop("request_id", None)
    return problem


def _is_unknown_job(status: int, body: bytes, job_id: str) -> bool:
    return status == 404 and json.loads(body).get("detail") == f"no job {job_id!r}"


async def _walk(role: Role, a: Tenant, b: Tenant, job_id: str, input_id: str) -> int:
    unknown = "f" * 32
    checked = 0
    static = _static(role)
    for method, canonical in _routes(role):
        where = f"{method} {canonical}"
        kind = "shared" if canonical in static else ROUTES.get((method, canonical))
        assert kind is not None, f"{where} is not classified in ROUTES: decide its isolation"
        body = {"json": {"prompt_id": PROMPT}} if kind == "interrupt" else (
            {"json": {}} if method in ("POST", "PUT", "PATCH") else {})  # fmt: skip
        path = _path(canonical, job_id, a.owner)
        status, _, answer = await role.call(method, path, auth=b.auth, **body)
        assert input_id.encode() not in answer, f"{where} shows B the input of A"
        if kind == "job":
            _, _, u_answer = await role.call(
                method, _path(canonical, unknown, a.owner), auth=b.auth, **body
            )
            assert _is_unknown_job(status, answer, job_id), f"{where}: {status} {answer!r}"
            # Word for word what an unknown id gets (but for the id the caller sent).
            assert _problem(answer.replace(job_id.encode(), unknown.encode())) == _problem(
                u_answer), where  # fmt: skip
        else:
            assert job_id.encode() not in answer, f"{where} shows B the job of A"
        if kind == "job":
            for auth in (a.auth, ADMIN_AUTH):
                status, _, answer = await role.call(method, path, auth=auth, **body)
                assert not _is_unknown_job(status, answer, job_id), where
                assert status < 500, where
        elif kind == "admin":
            assert status == 403, where
        elif kind in ("listing", "node-jobs"):
            assert status == 200, f"{where}: {status} {answer!r}"
            if canonical != "/api/v1/usage":
                for auth in (a.auth, ADMIN_AUTH):
                    status, _, answer = await role.call(method, path, auth=auth, **body)
                    assert job_id.encode() in answer, f"{where} hides A's own job"
        elif kind == "comfy-job":
            assert (status, json.loads(answer)) == (200, {}), f"{where}: {status} {answer!r}"
            for auth in (a.auth, ADMIN_AUTH):
                status, _, answer = await role.call(method, path, auth=auth, **body)
                assert job_id.encode() in answer, f"{where} hides A's own prompt"
        elif kind == "interrupt":
            assert status == 404, where
            status, _, _ = await role.call(method, path, auth=b.auth, json={})
            assert status == 403, where  # "whatever runs now" may be another's
            status, _, _ = await role.call(method, path, auth=a.auth, **body)
            assert status == 200, where
        else:
            assert kind == "shared", where
            assert status < 500, where
        checked += 1
    return checked


async def test_no_route_of_either_role_shows_one_key_the_others_job(
    balancer: Role, node: Role, a_and_b: tuple[Tenant, Tenant, str, str]
) -> None:
    a, b, job_id, input_id = a_and_b
    walked = await _walk(balancer, a, b, job_id, input_id)
    walked += await _walk(node, a, b, job_id, input_id)
    assert walked == len(_routes(balancer)) + len(_routes(node))
    # B's cancel found nothing to cancel: A's job is as it was.
    status, _, body = await balancer.call("GET", f"/api/v1/jobs/{job_id}", auth=a.auth)
    assert status == 200
    assert json.loads(body)["status"] == "succeeded"


async def test_listings_are_per_owner_and_the_admin_filters_by_key(
    balancer: Role, a_and_b: tuple[Tenant, Tenant, str, str]
) -> None:
    a, b, job_id, _ = a_and_b
    listed = {}
    for who, auth in (("a", a.auth), ("b", b.auth), ("admin", ADMIN_AUTH)):
        status, _, body = await balancer.call("GET", "/api/v1/jobs", auth=auth)
        assert status == 200
        listed[who] = {j["id"]: j["owner"] for j in json.loads(body)["jobs"]}
    assert set(listed["a"].values()) == {a.owner}
    assert job_id in listed["a"]
    assert set(listed["b"].values()) == {b.owner}
    assert len(listed["b"]) == 1
    assert listed["admin"] == {**listed["a"], **listed["b"]}
    for query in (f"owner={a.owner}", f"key={a.key_id}"):
        status, _, body = await balancer.call("GET", f"/api/v1/jobs?{query}", auth=ADMIN_AUTH)
        assert status == 200
        assert {j["id"] for j in json.loads(body)["jobs"]} == set(listed["a"])
    status, _, _ = await balancer.call("GET", f"/api/v1/jobs?key={a.key_id}", auth=b.auth)
    assert status == 403
    status, _, body = await balancer.call("GET", f"/api/v1/jobs?key={b.key_id}", auth=b.auth)
    assert status == 200
    assert {j["id"] for j in json.loads(body)["jobs"]} == set(listed["b"])
    status, _, body = await balancer.call("GET", "/api/v1/jobs?owner=bob", auth=ADMIN_AUTH)
    assert status == 400
    assert b"owner must be" in body


async def test_inputs_and_idempotency_keys_are_the_owners_own(
    balancer: Role, node: Role, a_and_b: tuple[Tenant, Tenant, str, str]
) -> None:
    a, b, _, _ = a_and_b
    data = png(seed=23)
    mine = await upload(balancer, a.auth, data)
    job = {"workflow": "invert", "params": {"image": mine["name"]}}
    never = {"workflow": "invert", "params": {"image": f"cfin_{'0' * 32}.png"}}
    status, _, refused = await balancer.call("POST", "/api/v1/jobs", auth=b.auth, json=job)
    _, _, unknown = await balancer.call("POST", "/api/v1/jobs", auth=b.auth, json=never)
    assert status == 422
    # Refused exactly as an input never uploaded (only the id differs).
    assert json.loads(refused)["detail"].replace(mine["id"], "0" * 32) == json.loads(
        unknown)["detail"]  # fmt: skip
    status, _, _ = await balancer.call("POST", "/api/v1/jobs", auth=a.auth, json=job)
    assert status == 202
    # B holding the same bytes may upload them: then they are B's too.
    assert (await upload(balancer, b.auth, data))["id"] == mine["id"]
    status, _, _ = await balancer.call("POST", "/api/v1/jobs", auth=b.auth, json=job)
    assert status == 202
    # One Idempotency-Key, two owners: two jobs; the same owner again: a replay.
    solid = {"workflow": "solid", "params": {"width": 8, "height": 8}}
    ids = []
    for auth in (a.auth, b.auth, a.auth):
        status, headers, body = await balancer.call(
            "POST", "/api/v1/jobs", auth=auth, json=solid, headers={"Idempotency-Key": "k-1"}
        )
        assert status == 202, body
        ids.append((json.loads(body)["id"], headers.get("Idempotent-Replayed")))
    assert ids[0][0] != ids[1][0]
    assert ids[1][1] is None
    assert ids[2] == (ids[0][0], "true")
    await until(lambda: balancer.call("GET", "/api/v1/jobs?status=queued", auth=ADMIN_AUTH),
                lambda r: json.loads(r[2])["jobs"] == [], what="jobs to run")  # fmt: skip
