"""Tenants: their usage, `GET /api/v1/usage` (store/usage.py; the admin reads every
owner's, or one owner's with `?owner=` / `?key=`; an API key reads its own), and their
limits, `/api/v1/tenants[/{owner}]` (store/limits.py; the admin's alone)."""

from __future__ import annotations

import datetime as dt
import re
from typing import Any

import structlog
from aiohttp import web
from pydantic import BaseModel

from comfyfleet.balancer.appkeys import JOBS
from comfyfleet.balancer.tenancy import OWNER_PARAMS, listing_owner
from comfyfleet.errors import BadRequest, NotFound
from comfyfleet.store.limits import OWNER_PATTERN, LimitStore, TenantLimits, TenantView
from comfyfleet.store.scripts import USAGE_KEEP_DAYS
from comfyfleet.store.usage import MAX_DAYS, UsageReport, UsageStore, today
from comfyfleet.web.auth import API_KEYS, require_admin
from comfyfleet.web.openapi import Body, Op, Param, Reply
from comfyfleet.web.responses import json_response, read_json

routes = web.RouteTableDef()
log = structlog.get_logger(__name__)
DATE_PATTERN = r"^[0-9]{4}-[0-9]{2}-[0-9]{2}$"
# The range when `from` is not given: the last 30 days, today included.
DEFAULT_DAYS = 30


def _date(request: web.Request, name: str) -> dt.date | None:
    raw = request.query.get(name)
    if raw is None:
        return None
    try:
        if len(raw) == len("YYYY-MM-DD"):  # fromisoformat takes other shapes too
            return dt.date.fromisoformat(raw)
    except ValueError:
        pass
    raise BadRequest(f"{name} must be a day as YYYY-MM-DD, got {raw[:24]!r}")


@routes.get("/api/v1/usage")
async def usage(request: web.Request) -> web.Response:
    owner = listing_owner(request)
    store = request.app[JOBS]
    last = _date(request, "to") or today(await store.now_ms())
    first = _date(request, "from") or last - dt.timedelta(days=DEFAULT_DAYS - 1)
    if first > last:
        raise BadRequest(f"from ({first}) is after to ({last})")
    if (last - first).days >= MAX_DAYS:
        raise BadRequest(f"at most {MAX_DAYS} days at once (usage is kept {USAGE_KEEP_DAYS})")
    report = await UsageStore(store.redis, store.keys).report(first, last, owner)
    return json_response(report.model_dump(mode="json", by_alias=True))


class TenantList(BaseModel):
    """Every tenant with limits or keys: admin, anonymous and each live API key."""

    tenants: list[TenantView]


def _limits_store(request: web.Request) -> LimitStore:
    jobs = request.app[JOBS]
    return LimitStore(jobs.redis, jobs.keys)


async def _tenant(request: web.Request) -> str:
    """The route's `{owner}`: admin, anonymous or a live key's `apikey:<id>`; else 404."""
    owner = request.match_info["owner"]
    if not re.fullmatch(OWNER_PATTERN, owner):
        raise NotFound(f"no tenant {owner[:40]!r}: admin, anonymous or apikey:<key id>")
    if owner.startswith("apikey:"):
        live = {k.id for k in await request.app[API_KEYS].all()}
        if owner.removeprefix("apikey:") not in live:
            raise NotFound(f"no API key {owner.removeprefix('apikey:')!r}")
    return owner


@routes.get("/api/v1/tenants")
async def list_tenants(request: web.Request) -> web.Response:
    require_admin(request)
    keys = await request.app[API_KEYS].all()
    owners = ["admin", "anonymous", *(f"apikey:{k.id}" for k in keys)]
    store = _limits_store(request)
    return json_response(TenantList(tenants=[await store.get(o) for o in owners]))


@routes.get("/api/v1/tenants/{owner}")
async def get_tenant(request: web.Request) -> web.Response:
    require_admin(request)
    return json_response(await _limits_store(request).get(await _tenant(request)))


@routes.patch("/api/v1/tenants/{owner}")
async def update_tenant(request: web.Request) -> web.Response:
    require_admin(request)
    owner = await _tenant(request)
    limits = TenantLimits.model_validate(await read_json(request))
    view = await _limits_store(request).update(owner, limits)
    log.info("tenant_limits_set", owner=owner, limits=sorted(limits.model_fields_set))
    return json_response(view)


EXAMPLE: dict[str, Any] = {
    "from": "2026-11-03", "to": "2026-12-02", "owner": "apikey:7f3a9c21d0e4",
    "days": [{"day": "2026-12-01", "owner": "apikey:7f3a9c21d0e4", "workflow": "txt2img",
              "jobs": {"succeeded": 41, "failed": 2, "cancelled": 1},
              "gpu_seconds": 312.5, "queue_seconds": 88.25, "output_bytes": 51_380_224}],
    "totals": [{"owner": "apikey:7f3a9c21d0e4", "workflow": "txt2img",
                "jobs": {"succeeded": 41, "failed": 2, "cancelled": 1},
                "gpu_seconds": 312.5, "queue_seconds": 88.25, "output_bytes": 51_380_224}],
}  # fmt: skip

TENANT_EXAMPLE: dict[str, Any] = {
    "owner": "apikey:7f3a9c21d0e4",
    "limits": {"weight": 2, "max_queued": 100, "max_running": 4, "rate": 2.0, "burst": 10,
               "workflows": ["txt2img"], "pools": None, "max_priority": 10},
    "queued": 12, "running": 4,
}  # fmt: skip
OWNER = Param(
    "owner",
    "path",
    {"type": "string", "pattern": OWNER_PATTERN},
    "admin, anonymous or apikey:<key id>",
    example="apikey:7f3a9c21d0e4",
)
OPS = [
    Op("GET", "/api/v1/usage", "getUsage", "Usage per owner, workflow and day",
       "What jobs cost, counted when each ended (UTC days by the fleet's clock), kept "
       f"{USAGE_KEEP_DAYS} days: jobs by outcome, GPU seconds (the sum of a job's attempts' "
       "running time on nodes, start to end), queue seconds (the rest of its life: queued "
       "or backing off) and output bytes. An API key reads its own; the admin every "
       "owner's, or one's with `owner` / `key`. Default range: the last "
       f"{DEFAULT_DAYS} days.",
       "jobs", {200: Reply("Usage per day and over the range", UsageReport, example=EXAMPLE)},
       params=[Param("from", "query", {"type": "string", "pattern": DATE_PATTERN},
                     "first day (UTC), included", example="2026-11-03"),
               Param("to", "query", {"type": "string", "pattern": DATE_PATTERN},
                     "last day (UTC), included; default today", example="2026-12-02"),
               *OWNER_PARAMS],
       errors=[400, 403, 503]),
    Op("GET", "/api/v1/tenants", "listTenants", "Tenants and their limits",
       "admin, anonymous and every live API key's owner, with their limits and how many of "
       "their jobs are queued and running now. Admin only.", "apikeys",
       {200: Reply("Every tenant", TenantList, example={"tenants": [TENANT_EXAMPLE]})},
       errors=[503], auth="admin"),
    Op("GET", "/api/v1/tenants/{owner}", "getTenant", "One tenant's limits",
       "Admin only.", "apikeys", {200: Reply("The tenant", TenantView, example=TENANT_EXAMPLE)},
       params=[OWNER], errors=[404, 503], auth="admin"),
    Op("PATCH", "/api/v1/tenants/{owner}", "updateTenant", "Set a tenant's limits",
       "Sets the limits given; `null` removes one (no limit); others stay. Jobs past "
       "`max_queued` or the submit `rate` get 429 `quota-exceeded` with Retry-After and "
       "`limit` naming it; a workflow, pool or priority the limits do not allow gets 403 "
       "`not-allowed`; `max_running` and `weight` shape which jobs nodes take. The "
       "anonymous principal is configured as `anonymous`. Admin only.", "apikeys",
       {200: Reply("The tenant now", TenantView, example=TENANT_EXAMPLE)},
       params=[OWNER],
       body=Body(TenantLimits, {"limits": {"max_queued": 100, "rate": 2.0, "burst": 10,
                                           "workflows": ["txt2img"], "max_running": None}}),
       errors=[400, 404, 422, 503], auth="admin"),
]  # fmt: skip
