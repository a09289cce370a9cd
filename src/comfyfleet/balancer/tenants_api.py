"""Tenants' usage: `GET /api/v1/usage` (store/usage.py). The admin reads every owner's, or
one owner's with `?owner=` / `?key=`; an API key reads its own."""

from __future__ import annotations

import datetime as dt
from typing import Any

from aiohttp import web

from comfyfleet.balancer.appkeys import JOBS
from comfyfleet.balancer.tenancy import OWNER_PARAMS, listing_owner
from comfyfleet.errors import BadRequest
from comfyfleet.store.scripts import USAGE_KEEP_DAYS
from comfyfleet.store.usage import MAX_DAYS, UsageReport, UsageStore, today
from comfyfleet.web.openapi import Op, Param, Reply
from comfyfleet.web.responses import json_response

routes = web.RouteTableDef()
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


EXAMPLE: dict[str, Any] = {
    "from": "2026-11-03", "to": "2026-12-02", "owner": "apikey:7f3a9c21d0e4",
    "days": [{"day": "2026-12-01", "owner": "apikey:7f3a9c21d0e4", "workflow": "txt2img",
              "jobs": {"succeeded": 41, "failed": 2, "cancelled": 1},
              "gpu_seconds": 312.5, "queue_seconds": 88.25, "output_bytes": 51_380_224}],
    "totals": [{"owner": "apikey:7f3a9c21d0e4", "workflow": "txt2img",
                "jobs": {"succeeded": 41, "failed": 2, "cancelled": 1},
                "gpu_seconds": 312.5, "queue_seconds": 88.25, "output_bytes": 51_380_224}],
}  # fmt: skip

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
]  # fmt: skip
