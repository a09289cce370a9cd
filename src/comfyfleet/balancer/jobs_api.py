"""Handlers of /api/v1/jobs: parse, call the store, render. No state of their own."""

from __future__ import annotations

import random
from typing import Any

from aiohttp import web

from comfyfleet.balancer.admission import queue_limit
from comfyfleet.balancer.appkeys import CONFIG, JOBS, WORKFLOWS
from comfyfleet.balancer.events_api import wait_for_end, wait_seconds
from comfyfleet.balancer.inputs_api import hold_inputs
from comfyfleet.balancer.outputs_api import output_urls
from comfyfleet.balancer.schemas import JobPage, JobRequest, JobView, ProgressView
from comfyfleet.balancer.tenancy import job_or_404, listing_owner
from comfyfleet.balancer.urls import public_base
from comfyfleet.balancer.webhooks import WEBHOOKS
from comfyfleet.errors import BadRequest
from comfyfleet.models.file_inputs import check_file_names
from comfyfleet.models.graph import check_graph
from comfyfleet.models.job import Job, JobSpec, JobStatus
from comfyfleet.store.jobs import DEFAULT_PAGE, MAX_PAGE, JobStore
from comfyfleet.templates.render import render, resolve_params, validate_params
from comfyfleet.web.auth import caller_of, principal_of
from comfyfleet.web.numbers import ascii_int, is_ascii_int
from comfyfleet.web.responses import JSON_BODY_LIMIT, json_response, read_json

__all__ = ["JSON_BODY_LIMIT", "routes"]

IDEMPOTENCY_HEADER = "Idempotency-Key"
MAX_IDEMPOTENCY_KEY = 128
# The largest output index a path may name (the OpenAPI entry reads it too).

routes = web.RouteTableDef()


async def _progress(store: JobStore, job: Job) -> ProgressView | None:
    if job.status is not JobStatus.RUNNING:
        return None
    event = await store.last_event(job.id, "progress")
    if event is None:
        return None
    return ProgressView(
        value=int(event.get("value", 0)), max=int(event.get("max", 0)), node=event.get("node")
    )


async def job_view(request: web.Request, job: Job, position: int | None = None) -> JobView:
    """`position`: the queue position when the caller knows it (the enqueue answered it);
    else it is read when the job is queued."""
    store = request.app[JOBS]
    if position is None and job.status is JobStatus.QUEUED:
        position = await store.queue_position(job.id, job)
    return JobView.of(
        job,
        base_url=public_base(request),
        queue_position=position,
        progress=await _progress(store, job),
        output_urls=await output_urls(request, job),
    )


async def _spec_of(request: web.Request, body: JobRequest) -> JobSpec:
    common: dict[str, Any] = {
        "priority": body.priority,
        "pool": body.pool,
        "max_attempts": body.max_attempts,
        "timeout_ms": body.timeout_ms,
        "metadata": body.metadata,
        "webhook_url": body.webhook_url,
        "owner": principal_of(request).label,
    }
    if body.graph is not None:
        graph = check_graph(body.graph)
        check_file_names(graph)
        return JobSpec(graph=graph, **common)
    assert body.workflow is not None  # JobRequest guarantees one of the two
    template = await request.app[WORKFLOWS].get(body.workflow, body.version)
    params = resolve_params(template, validate_params(template, body.params), random.Random())
    graph = render(template, params)
    check_file_names(graph, unchanged_from=template.graph)  # what the params wrote
    return JobSpec(
        graph=graph,
        workflow=template.name,
        workflow_version=template.version,
        params=params,
        **common,
    )


def _idempotency_key(request: web.Request) -> str | None:
    key = request.headers.get(IDEMPOTENCY_HEADER)
    if key is None:
        return None
    if not 0 < len(key) <= MAX_IDEMPOTENCY_KEY or not key.isprintable():
        raise BadRequest(
            f"{IDEMPOTENCY_HEADER} must be 1 to {MAX_IDEMPOTENCY_KEY} printable characters"
        )
    return key


@routes.post("/api/v1/jobs")
async def submit_job(request: web.Request) -> web.Response:
    key = _idempotency_key(request)
    wait_s = wait_seconds(request)
    body = JobRequest.model_validate(await read_json(request))
    await request.app[WEBHOOKS].check(body.webhook_url, body.webhook_events)
    spec = await _spec_of(request, body)
    await hold_inputs(request, spec.graph)
    bound = queue_limit(request.app[CONFIG].queue_limits, spec.pool)
    placed = await request.app[JOBS].enqueue_placed(spec, idempotency_key=key, queue_limit=bound)
    job, created, position = placed.job, placed.created, placed.queue_position
    if created and body.webhook_url:
        await request.app[WEBHOOKS].watch(job, body.webhook_events, public_base(request))
    if wait_s and not job.is_terminal:
        fresh = job if created else None
        job = await wait_for_end(request.app, job.id, wait_s, caller_of(request),
                                 queued=fresh) or job  # fmt: skip
        position = None  # it may have moved on meanwhile
    view = await job_view(request, job, position)
    headers = {"Location": f"/api/v1/jobs/{job.id}"}
    if not created:
        headers["Idempotent-Replayed"] = "true"
    # ?wait=: 200 when the job ended within the wait, else 202 as without it.
    status = 200 if wait_s and job.is_terminal else 202
    return json_response(view, status=status, headers=headers)


@routes.get("/api/v1/jobs/{job_id}")
async def get_job(request: web.Request) -> web.Response:
    wait_s = wait_seconds(request)
    job = await job_or_404(request)
    if wait_s and not job.is_terminal:
        # Long-poll: answer when the job ends, or as it is after `wait_s` seconds.
        job = await wait_for_end(request.app, job.id, wait_s, caller_of(request)) or job
    return json_response(await job_view(request, job))


@routes.delete("/api/v1/jobs/{job_id}")
async def cancel_job(request: web.Request) -> web.Response:
    job = await job_or_404(request)
    job = await request.app[JOBS].cancel(job.id)
    return json_response(await job_view(request, job), status=202 if not job.is_terminal else 200)


def _int_query(request: web.Request, name: str, default: int, low: int, high: int) -> int:
    raw = request.query.get(name)
    return default if raw is None else ascii_int(raw, f"query parameter {name!r}", low, high)


@routes.get("/api/v1/jobs")
async def list_jobs(request: web.Request) -> web.Response:
    raw_status = request.query.get("status")
    try:
        status = JobStatus(raw_status) if raw_status is not None else None  # '' is wrong too
    except ValueError:
        allowed = ", ".join(s.value for s in JobStatus)
        raise BadRequest(f"unknown status {raw_status!r}; one of {allowed}") from None
    limit = _int_query(request, "limit", DEFAULT_PAGE, 1, MAX_PAGE)
    cursor = request.query.get("cursor")
    if cursor is not None and not is_ascii_int(cursor):
        raise BadRequest(f"invalid cursor {cursor[:24]!r}: pass the next_cursor of a page")
    owner = listing_owner(request)
    jobs, cursor = await request.app[JOBS].list_jobs(
        status=status, owner=owner, cursor=cursor, limit=limit
    )
    base = public_base(request)
    views = [JobView.of(j, base_url=base, output_urls=await output_urls(request, j)) for j in jobs]
    page = JobPage(jobs=views, next_cursor=cursor)
    return json_response(page)
