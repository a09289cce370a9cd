"""Tenants: each job owner's record (`keys.tenant`), read by the enqueue and claim scripts.

A tenant is a job owner (`Job.owner`, the submitting principal's label). Its record holds
config -- `weight` (its share of GPU time in a pool against other tenants with queued work),
`max_running`, `max_queued` -- written by whoever manages API keys, and two live counters
the job scripts keep on every status change (set_status in lua/_lib.lua): `queued` (queued
or backing off) and `running`. Absent config means: weight 1, no bound.
"""

from __future__ import annotations

from dataclasses import dataclass

import redis.asyncio as aioredis

from comfyfleet.store.keys import Keys
from comfyfleet.store.scripts import fields_of, guarded

DEFAULT_WEIGHT = 1


@dataclass(frozen=True)
class Tenant:
    owner: str
    weight: int = DEFAULT_WEIGHT
    max_running: int | None = None  # None: no bound
    max_queued: int | None = None  # None: no bound
    queued: int = 0
    running: int = 0


def _int(value: str | None) -> int | None:
    return int(value) if value not in (None, "") else None


class TenantStore:
    """Every method raises StoreError (503 at the API edge) when Redis cannot be reached."""

    def __init__(self, redis: aioredis.Redis, keys: Keys) -> None:
        self.redis = redis
        self.keys = keys

    @guarded
    async def get(self, owner: str) -> Tenant:
        """The tenant's config and counters (defaults when it has no record)."""
        f = fields_of(await self.redis.hgetall(self.keys.tenant(owner)))
        return Tenant(
            owner=owner,
            weight=_int(f.get("weight")) or DEFAULT_WEIGHT,
            max_running=_int(f.get("max_running")),
            max_queued=_int(f.get("max_queued")),
            queued=_int(f.get("queued")) or 0,
            running=_int(f.get("running")) or 0,
        )

    @guarded
    async def configure(
        self,
        owner: str,
        *,
        weight: int | None = None,
        max_running: int | None = None,
        max_queued: int | None = None,
    ) -> None:
        """Set the given config fields; a None leaves that field as it is. Use `unset` to
        remove a bound. The counters are never written here."""
        if weight is not None and weight < 1:
            raise ValueError("weight must be >= 1")
        values = {"weight": weight, "max_running": max_running, "max_queued": max_queued}
        given = {name: str(v) for name, v in values.items() if v is not None}
        if given:
            await self.redis.hset(self.keys.tenant(owner), mapping=given)  # type: ignore[arg-type]

    @guarded
    async def unset(self, owner: str, *fields: str) -> None:
        """Remove config fields (`max_running`, `max_queued`: no bound; `weight`: 1)."""
        allowed = {"weight", "max_running", "max_queued"}
        if not set(fields) <= allowed:
            raise ValueError(f"only {sorted(allowed)} can be unset")
        if fields:
            await self.redis.hdel(self.keys.tenant(owner), *fields)
