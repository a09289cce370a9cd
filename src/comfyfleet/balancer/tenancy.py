"""Tenancy: every job, input and usage figure belongs to an owner (the submitting
principal's label: `admin`, `anonymous` or `apikey:<key id>`, see `web.auth.Principal`).

A caller sees and touches its own jobs only; the admin sees all. A job of another owner
answers exactly what an unknown job answers (404 `not-found`), so ids leak nothing. Every
route that takes a job id goes through `job_or_404` (or `check_job`, when it does not need
the job itself), and every listing through `listing_owner`: a new route gets isolation by
calling them, and tests/api/test_isolation.py fails for a route that does not.
"""

from __future__ import annotations

import re

from aiohttp import web

from comfyfleet.balancer.appkeys import JOBS
from comfyfleet.balancer.schemas import JOB_ID_RE
from comfyfleet.errors import BadRequest, NotFound
from comfyfleet.models.job import Job
from comfyfleet.store.apikeys import KEY_ID_PATTERN
from comfyfleet.store.jobs import JobStore
from comfyfleet.store.limits import OWNER_PATTERN
from comfyfleet.web.auth import Forbidden, principal_of
from comfyfleet.web.openapi import Param

_OWNER = re.compile(OWNER_PATTERN)
_KEY_ID = re.compile(KEY_ID_PATTERN)
# `?owner=` / `?key=` of listings (documented once, read by `owner_query`).
OWNER_PARAMS = [
    Param("owner", "query", {"type": "string", "pattern": OWNER_PATTERN},
          "the admin: only this owner's (a key may name only itself)",
          example="apikey:7f3a9c21d0e4"),
    Param("key", "query", {"type": "string", "pattern": KEY_ID_PATTERN},
          "as `owner=apikey:<key>`", example="7f3a9c21d0e4"),
]  # fmt: skip


def not_found(job_id: str) -> NotFound:
    return NotFound(f"no job {job_id!r}", job_id=job_id)


async def job_or_404(request: web.Request, job_id: str | None = None,
                     store: JobStore | None = None) -> Job:  # fmt: skip
    """The job `job_id` (default: the route's `{job_id}`) if the caller may see it; else
    NotFound, the same answer as for an id no job has."""
    job_id = request.match_info["job_id"] if job_id is None else job_id
    store = request.app[JOBS] if store is None else store
    job = await store.get(job_id) if JOB_ID_RE.fullmatch(job_id) else None
    if job is None or not principal_of(request).may_see(job.owner):
        raise not_found(job_id)
    return job


async def check_job(request: web.Request, job_id: str | None = None) -> str:
    """As `job_or_404` for a route that needs only the id (one HGET, not the whole job,
    whose graph may be megabytes). Returns the id."""
    job_id = request.match_info["job_id"] if job_id is None else job_id
    owner = await request.app[JOBS].owner_of(job_id) if JOB_ID_RE.fullmatch(job_id) else None
    if owner is None or not principal_of(request).may_see(owner):
        raise not_found(job_id)
    return job_id


def owner_query(request: web.Request) -> str | None:
    """The owner named by `?owner=<label>` or `?key=<key id>`; None when neither is given."""
    owner, key = request.query.get("owner"), request.query.get("key")
    if owner is not None and key is not None:
        raise BadRequest("pass either 'owner' or 'key', not both")
    if key is not None:
        if not _KEY_ID.fullmatch(key):
            raise BadRequest(f"key must be an API key id (12 hex digits), got {key[:24]!r}")
        return f"apikey:{key}"
    if owner is not None and not _OWNER.fullmatch(owner):
        raise BadRequest(f"owner must be admin, anonymous or apikey:<key id>, got {owner[:40]!r}")
    return owner


def listing_owner(request: web.Request) -> str | None:
    """Whose jobs (or usage) a listing shows: the caller's own, always, for a non-admin
    (Forbidden when it names another owner); for the admin the owner it names, or None
    for every owner."""
    principal, named = principal_of(request), owner_query(request)
    if principal.kind == "admin":
        return named
    if named is not None and named != principal.label:
        raise Forbidden("only the admin may read another owner's jobs or usage")
    return principal.label
