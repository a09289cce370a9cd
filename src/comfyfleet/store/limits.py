"""Tenant limits: the config half of a tenant's record `{ns}:tenant:<owner>` (see
store/tenants.py for the record and its live counters). Written by the admin (`comfyfleet
apikey create/update`, `PATCH /api/v1/tenants/{owner}`); read by the job scripts:
`max_queued` (enqueue), `max_running` and `weight` (claim), and the rest by enqueue's
`admit()` (lua/_quota.lua): allowed workflows and pools, max priority, and the submit rate
as a token bucket kept in the same hash, so it holds across every balancer replica.
"""

from __future__ import annotations

import re
from typing import Any

import redis.asyncio as aioredis
from pydantic import BaseModel, ConfigDict, Field

from comfyfleet.errors import BadRequest
from comfyfleet.models.job import MAX_PRIORITY, MIN_PRIORITY
from comfyfleet.store.keys import Keys
from comfyfleet.store.scripts import fields_of, guarded

# A tenant: a job owner, the label of the principal that submitted it.
OWNER_PATTERN = r"^(admin|anonymous|apikey:[0-9a-f]{12})$"
# A workflow or pool name in an allow-list (a comma separates them in Redis).
NAME_PATTERN = r"^[A-Za-z0-9_.-]{1,64}$"
# The bucket's state; cleared when the rate or burst change, so a new rate starts full.
BUCKET_FIELDS = ("bucket_tokens", "bucket_ms")
_RATE = re.compile(r"^\s*([0-9]+(?:\.[0-9]+)?)\s*(?:/\s*([smh]))?\s*$")
_PER_S = {"s": 1, "m": 60, "h": 3600}


class TenantLimits(BaseModel):
    """A tenant's limits; each absent (null) means no limit (weight: 1)."""

    model_config = ConfigDict(extra="forbid", strict=True)

    weight: int | None = Field(default=None, ge=1, le=1000,
                               description="its share of GPU time against other tenants "
                               "with queued work in a pool (default 1)")  # fmt: skip
    max_queued: int | None = Field(default=None, ge=0, description="jobs queued at once")
    max_running: int | None = Field(default=None, ge=0, description="jobs running at once")
    rate: float | None = Field(
        default=None, gt=0, le=100_000, description="submits a second, on average (token bucket)"
    )
    burst: int | None = Field(
        default=None, ge=1, le=1_000_000, description="submits at once beyond the rate (default 1)"
    )
    workflows: list[str] | None = Field(default=None, max_length=256,
                                        description="the only workflows it may run "
                                        "(`_graph`: raw graphs)")  # fmt: skip
    pools: list[str] | None = Field(
        default=None, max_length=256, description="the only pools it may submit to"
    )
    max_priority: int | None = Field(
        default=None,
        ge=MIN_PRIORITY,
        le=MAX_PRIORITY,
        description="the highest priority it may ask for",
    )

    def check_names(self) -> TenantLimits:
        for field in ("workflows", "pools"):
            for name in getattr(self, field) or []:
                if not re.fullmatch(NAME_PATTERN, name):
                    raise BadRequest(f"{field} holds {name[:40]!r}: not a workflow or pool name")
        return self


class TenantView(BaseModel):
    owner: str = Field(description="admin, anonymous or apikey:<key id>")
    limits: TenantLimits
    queued: int = Field(description="its jobs queued now (or backing off)")
    running: int = Field(description="its jobs running now")


def parse_rate(text: str) -> float:
    """`R`, `R/s`, `R/m` or `R/h` as submits a second; ValueError otherwise."""
    match = _RATE.fullmatch(text)
    if match is None or float(match.group(1)) <= 0:
        raise ValueError(f"rate must look like 5/s, 30/m or 100/h (> 0), got {text!r}")
    return float(match.group(1)) / _PER_S[match.group(2) or "s"]


def _stored(name: str, value: Any) -> str:
    if isinstance(value, list):
        return ",".join(value)
    return repr(value) if isinstance(value, float) else str(value)


def _limits(fields: dict[str, str]) -> TenantLimits:
    found: dict[str, Any] = {}
    for name in TenantLimits.model_fields:
        raw = fields.get(name, "")
        if raw == "":
            continue
        if name in ("workflows", "pools"):
            found[name] = raw.split(",")
        elif name == "rate":
            found[name] = float(raw)
        else:
            found[name] = int(raw)
    return TenantLimits.model_validate(found)


class LimitStore:
    """Read and write tenants' limits. StoreError (503) when Redis is away."""

    def __init__(self, redis: aioredis.Redis, keys: Keys) -> None:
        self.redis = redis
        self.keys = keys

    @guarded
    async def get(self, owner: str) -> TenantView:
        fields = fields_of(await self.redis.hgetall(self.keys.tenant(owner)))
        return TenantView(owner=owner, limits=_limits(fields),
                          queued=int(fields.get("queued") or 0),
                          running=int(fields.get("running") or 0))  # fmt: skip

    @guarded
    async def update(self, owner: str, limits: TenantLimits) -> TenantView:
        """Set the limits given in `limits` (its fields set); a field given as None is
        removed (no limit). Others stay as they are. One MULTI: one key."""
        given = {name: getattr(limits.check_names(), name) for name in limits.model_fields_set}
        put = {n: _stored(n, v) for n, v in given.items() if v is not None}
        drop = [n for n, v in given.items() if v is None]
        if "rate" in given or "burst" in given:
            drop += BUCKET_FIELDS
        key = self.keys.tenant(owner)
        async with self.redis.pipeline(transaction=True) as pipe:
            if put:
                pipe.hset(key, mapping=put)  # type: ignore[arg-type]
            if drop:
                pipe.hdel(key, *drop)
            await pipe.execute()
        return await self.get(owner)
