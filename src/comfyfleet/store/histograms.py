"""Fleet-wide latency histograms and ended-job counters, kept in Redis.

Why in Redis and not in each process: the balancer is any number of stateless replicas
and a job's end is written by whichever process ends it (the node that ran it, the reaper
of any replica for a lost node or an expired lease, the replica that took a cancel). A
per-process histogram would show each scrape target a random slice of the jobs. So the
job scripts observe in the same atomic step as the transition they make (`lua/_observe.lua`:
the claim observes queue wait; `finish()` run time, end-to-end time and attempts, and
counts the end per workflow, pool and status), and every replica's `/metrics` reads the
same numbers. Deliveries (webhooks, alerts) are observed by the process that sent them,
into the same hash, for the same reason.

{ns}:hist          HASH  field "<histogram>\\x1f<label values...>\\x1f<bucket index|sum|count>"
{ns}:stats:ended   HASH  field "<workflow>\\x1f<pool>\\x1f<status>" -> jobs ended so

Buckets are stored one count per bucket (not cumulative); `read` adds them up. Values in
seconds (attempts: a count). A raw-graph job's workflow label is `_graph`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import redis.asyncio as aioredis

from comfyfleet.store.keys import Keys
from comfyfleet.store.scripts import guarded, text

SEP = "\x1f"

GRAPH_WORKFLOW = "_graph"
_JOB_LABELS = ("workflow", "pool")


@dataclass(frozen=True)
class HistogramSpec:
    key: str  # short name in the hash (and in Lua)
    name: str  # the Prometheus family name
    help: str
    labels: tuple[str, ...]
    bounds: tuple[float, ...]  # upper bounds, ascending; +Inf is implied


SPECS: tuple[HistogramSpec, ...] = (
    HistogramSpec("queue_wait", "comfyfleet_job_queue_wait_seconds",
                  "From entering the queue (or its retry backoff) to a claim, per claim.",
                  _JOB_LABELS, (0.1, 0.5, 1, 2, 5, 10, 30, 60, 120, 300, 600, 1800, 3600)),
    HistogramSpec("run", "comfyfleet_job_run_seconds",
                  "Run time of the attempt that ended a job (claim to end).",
                  _JOB_LABELS, (0.5, 1, 2, 5, 10, 20, 30, 60, 120, 300, 600, 1200, 3600)),
    HistogramSpec("e2e", "comfyfleet_job_end_to_end_seconds",
                  "Submit to end, every ended job (succeeded, failed, cancelled).",
                  _JOB_LABELS, (1, 2, 5, 10, 20, 30, 60, 120, 300, 600, 1200, 3600, 7200)),
    HistogramSpec("attempts", "comfyfleet_job_attempts",
                  "Attempts (claims) a job took, observed when it ends.",
                  _JOB_LABELS, (0, 1, 2, 3, 4, 5, 10)),
    HistogramSpec("webhook", "comfyfleet_webhook_delivery_seconds",
                  "Time of one webhook delivery attempt, by outcome (ok, error).",
                  ("outcome",), (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)),
    HistogramSpec("alert", "comfyfleet_alert_delivery_seconds",
                  "Time of one alert notification attempt, by receiver kind and outcome.",
                  ("kind", "outcome"), (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)),
)  # fmt: skip
BY_KEY = {s.key: s for s in SPECS}


def lua_bounds() -> str:
    """The Lua table of the job histograms' bounds, prepended to the job scripts."""
    rows = ", ".join(
        f"{s.key} = {{{', '.join(repr(float(b)) for b in s.bounds)}}}"
        for s in SPECS
        if s.labels == _JOB_LABELS
    )
    return f"local HISTOGRAM_BOUNDS = {{{rows}}}\n"


def bucket_index(bounds: Sequence[float], value: float) -> int:
    """1-based index of the first bound >= value; len(bounds) + 1 for +Inf (as in Lua)."""
    for i, bound in enumerate(bounds, start=1):
        if value <= bound:
            return i
    return len(bounds) + 1


@dataclass(frozen=True)
class Series:
    """One label set of a histogram: cumulative counts per bound (+Inf last), and sum."""

    labels: tuple[str, ...]
    cumulative: tuple[int, ...]
    sum: float

    @property
    def count(self) -> int:
        return self.cumulative[-1]


@guarded
async def observe(
    redis: aioredis.Redis, keys: Keys, key: str, labels: Sequence[str], value: float
) -> None:
    """Add one observation (one MULTI on one key)."""
    spec = BY_KEY[key]
    base = SEP.join([key, *labels]) + SEP
    async with redis.pipeline(transaction=True) as pipe:
        pipe.hincrby(keys.hist, base + str(bucket_index(spec.bounds, value)), 1)
        pipe.hincrbyfloat(keys.hist, base + "sum", value)
        pipe.hincrby(keys.hist, base + "count", 1)
        await pipe.execute()


def series_of(raw: dict[Any, Any]) -> dict[str, list[Series]]:
    """Every histogram's series from an HGETALL of `{ns}:hist`."""
    cells: dict[tuple[str, tuple[str, ...]], dict[str, float]] = {}
    for field, value in raw.items():
        parts = text(field).split(SEP)
        spec = BY_KEY.get(parts[0])
        if spec is None or len(parts) != len(spec.labels) + 2:
            continue
        cells.setdefault((parts[0], tuple(parts[1:-1])), {})[parts[-1]] = float(text(value))
    out: dict[str, list[Series]] = {s.key: [] for s in SPECS}
    for (key, labels), cell in sorted(cells.items()):
        bounds = BY_KEY[key].bounds
        running, cumulative = 0, []
        for i in range(1, len(bounds) + 2):
            running += int(cell.get(str(i), 0))
            cumulative.append(running)
        out[key].append(Series(labels, tuple(cumulative), cell.get("sum", 0.0)))
    return out


@guarded
async def read(redis: aioredis.Redis, keys: Keys) -> dict[str, list[Series]]:
    return series_of(await redis.hgetall(keys.hist))


@guarded
async def ended(redis: aioredis.Redis, keys: Keys) -> dict[tuple[str, str, str], int]:
    """(workflow, pool, status) -> jobs ended so."""
    raw = await redis.hgetall(keys.stats_ended)
    out = {}
    for field, value in raw.items():
        parts = text(field).split(SEP)
        if len(parts) == 3:
            out[(parts[0], parts[1], parts[2])] = int(value)
    return out
