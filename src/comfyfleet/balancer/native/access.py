"""Who may see which prompt, in one place: a principal sees its own jobs, the admin all.

Every native route that names a prompt goes through `own_job`; a prompt of another
principal is answered exactly as an unknown one (ComfyUI's `{}` or 404), so its existence
does not leak.
"""

from __future__ import annotations

from aiohttp import web

from comfyfleet.balancer.appkeys import JOBS
from comfyfleet.balancer.schemas import JOB_ID_RE
from comfyfleet.models.job import Job
from comfyfleet.web.auth import Principal, principal_of


def may_see(principal: Principal, job: Job) -> bool:
    return principal.may_see(job.owner)  # the rule every route uses (balancer/tenancy.py)


async def own_job(request: web.Request, prompt_id: str) -> Job | None:
    """The caller's job `prompt_id`, or None (unknown, malformed id, or another's)."""
    if not JOB_ID_RE.fullmatch(prompt_id):
        return None
    job = await request.app[JOBS].get(prompt_id)
    if job is None or not may_see(principal_of(request), job):
        return None
    return job
