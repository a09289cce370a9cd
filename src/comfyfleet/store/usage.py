"""Usage accounting: what each owner's jobs cost, per workflow and day, kept 90 days.

Recorded by the job scripts themselves when a job ends (lua/_usage.lua, called from
`finish()` in lua/_lib.lua), so a figure is counted exactly once, in the same atomic step
as the end it counts, whichever process ended the job. Per job: its outcome, `gpu_ms` (the
sum of its attempts' running time on a node, each from its start to its end as the job's
`history` records them), `queue_ms` (the rest of its life, created to finished: waiting in
a queue or a retry backoff) and `output_bytes` (the sizes of its outputs). A job counts
on the day (UTC, by the fleet's clock) it ended. Reads here; writes only in Lua.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from typing import Any

import redis.asyncio as aioredis
from pydantic import BaseModel, Field

from comfyfleet.store.keys import Keys
from comfyfleet.store.scripts import DAY_MS, USAGE_KEEP_DAYS, guarded, text

OUTCOMES = ("succeeded", "failed", "cancelled")
MEASURES = (*OUTCOMES, "gpu_ms", "queue_ms", "output_bytes")
# The most days one read spans: all that is kept, and the day being counted.
MAX_DAYS = USAGE_KEEP_DAYS + 1
_EPOCH = dt.date(1970, 1, 1)
# (owner, workflow) -> measure -> value
Grouped = dict[tuple[str, str], dict[str, int]]


class Usage(BaseModel):
    """One owner's use of one workflow (`_graph`: raw graphs) over a day or a range."""

    owner: str = Field(description="admin, anonymous or apikey:<key id>")
    workflow: str
    jobs: dict[str, int] = Field(description="jobs ended, by outcome (succeeded, failed, "
                                 "cancelled)")  # fmt: skip
    gpu_seconds: float = Field(description="the jobs' attempts' running time on nodes")
    queue_seconds: float = Field(description="the rest of the jobs' lives: queued, backing off")
    output_bytes: int


class DayUsage(Usage):
    day: str = Field(description="the UTC day the jobs ended, YYYY-MM-DD")


class UsageReport(BaseModel):
    """Usage from `from` to `to` (UTC days, both included), one owner's or every owner's."""

    from_day: str = Field(alias="from", description="YYYY-MM-DD")
    to_day: str = Field(alias="to", description="YYYY-MM-DD")
    owner: str | None = Field(description="whose; null: every owner's")
    days: list[DayUsage] = Field(description="per day, owner and workflow, oldest first")
    totals: list[Usage] = Field(description="per owner and workflow over the whole range")

    model_config = {"populate_by_name": True}


def day_number(day: dt.date) -> int:
    """Whole days since the epoch: the `<day>` of `{ns}:usage:<day>`."""
    return (day - _EPOCH).days


def day_of(number: int) -> dt.date:
    return _EPOCH + dt.timedelta(days=number)


def today(now_ms: int) -> dt.date:
    return day_of(now_ms // DAY_MS)


def _usage(owner: str, workflow: str, counts: dict[str, int]) -> dict[str, Any]:
    return {
        "owner": owner,
        "workflow": workflow,
        "jobs": {o: counts.get(o, 0) for o in OUTCOMES},
        "gpu_seconds": counts.get("gpu_ms", 0) / 1000,
        "queue_seconds": counts.get("queue_ms", 0) / 1000,
        "output_bytes": counts.get("output_bytes", 0),
    }


class UsageStore:
    """Reads of the usage figures. Every method raises StoreError when Redis is away."""

    def __init__(self, redis: aioredis.Redis, keys: Keys) -> None:
        self.redis = redis
        self.keys = keys

    @guarded
    async def report(self, first: dt.date, last: dt.date, owner: str | None) -> UsageReport:
        """Usage of the days `first`..`last` (both included, at most MAX_DAYS), of `owner`
        (None: every owner)."""
        numbers = list(range(day_number(first), day_number(last) + 1))
        async with self.redis.pipeline(transaction=False) as pipe:
            for number in numbers:
                pipe.hgetall(self.keys.usage_day(number))
            rows = await pipe.execute()
        days: list[DayUsage] = []
        totals: Grouped = {}
        for number, raw in zip(numbers, rows, strict=True):
            per_day = _parse(raw.items(), owner)
            for (who, workflow), counts in sorted(per_day.items()):
                days.append(DayUsage(day=day_of(number).isoformat(),
                                     **_usage(who, workflow, counts)))  # fmt: skip
                total = totals.setdefault((who, workflow), {})
                for measure, value in counts.items():
                    total[measure] = total.get(measure, 0) + value
        return UsageReport(
            from_day=first.isoformat(), to_day=last.isoformat(), owner=owner, days=days,
            totals=[Usage(**_usage(w, wf, c)) for (w, wf), c in sorted(totals.items())],
        )  # fmt: skip

    @guarded
    async def totals(self) -> dict[tuple[str, str], int]:
        """(owner, measure) -> value since the namespace began (for /metrics)."""
        raw: Any = await self.redis.hgetall(self.keys.usage_total)
        out: dict[tuple[str, str], int] = {}
        for field, value in raw.items():
            owner, _, measure = text(field).rpartition("\x1f")
            out[(owner, measure)] = int(value)
        return out


def _parse(items: Iterable[tuple[Any, Any]], owner: str | None) -> Grouped:
    """A day hash's fields "<owner>\\x1f<workflow>\\x1f<measure>" grouped by (owner, workflow)."""
    out: Grouped = {}
    for field, value in items:
        parts = text(field).split("\x1f")
        if len(parts) != 3 or (owner is not None and parts[0] != owner):
            continue
        out.setdefault((parts[0], parts[1]), {})[parts[2]] = int(value)
    return out
