"""Admission: what the balancer refuses, so a flood or a fault degrades into clear answers.

- Backpressure: each pool's queue has a bound (`BalancerConfig.queue_limits`, CLI
  `--queue-limit`). The bound is checked inside the enqueue script, in the same atomic step
  as the insert, so replicas racing each other cannot overshoot it. A submit beyond it is
  refused with `429 Too Many Requests`, a `Retry-After` header and a `queue-full` problem;
  an idempotent replay of an accepted job is still answered. A tenant at one of its own
  limits (`max_queued`, ...) gets the same 429 as a `quota-exceeded` problem naming the
  limit, with the Retry-After the error carries. Retries and requeues are
  never refused: those jobs were accepted already. Redis memory is then bounded by the
  bounds times the largest job body (`JSON_BODY_LIMIT`).
- Uploads: each caller's inputs held in Redis, and all of them together, are bounded
  (`--input-quota-mib`, `--input-store-mib`); beyond either an upload gets 429 with
  Retry-After (`input-quota-exceeded`, `input-store-full`).
- Store outage: a Redis error that escapes a handler (any reader, not only the job store)
  becomes a `503 store-unavailable` problem with `Retry-After`, never a 500.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, Mapping

import structlog
from aiohttp import web
from redis.exceptions import RedisError

from comfyfleet.errors import ComfyfleetError, ConfigError, QuotaExceeded, StoreError
from comfyfleet.store.inputs import InputsFull
from comfyfleet.store.jobs import QueueFull
from comfyfleet.web.numbers import is_ascii_int
from comfyfleet.web.problems import problem_response

# What a refused client is told to wait before trying again (s).
QUEUE_FULL_RETRY_AFTER_S = 5
INPUTS_FULL_RETRY_AFTER_S = 60
STORE_DOWN_RETRY_AFTER_S = 2
# The key of `queue_limits` that applies to every pool not named.
ANY_POOL = "*"

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def parse_queue_limits(specs: Iterable[str]) -> dict[str, int]:
    """`--queue-limit` values: `N` (every pool) or `POOL=N` (one pool; wins over N).
    0 means no bound. ConfigError on anything else."""
    limits: dict[str, int] = {}
    for spec in specs:
        pool, sep, number = spec.rpartition("=")
        pool = pool.strip() if sep else ANY_POOL
        if not is_ascii_int(number.strip()) or not pool:
            raise ConfigError(f"--queue-limit expects N or POOL=N, got {spec!r}")
        limits[pool] = int(number)
    return limits


def queue_limit(limits: Mapping[str, int], pool: str) -> int | None:
    """The bound of `pool`'s queue (None: unbounded)."""
    bound = limits.get(pool, limits.get(ANY_POOL))
    return bound or None


log = structlog.get_logger(__name__)


def _refusal(exc: ComfyfleetError, retry_after_s: int) -> web.Response:
    if exc.status >= 500:
        log.warning("request_failed", error=exc.code, detail=exc.detail)
    request_id = structlog.contextvars.get_contextvars().get("request_id") or ""
    response = problem_response(exc.problem(), str(request_id))
    response.headers["Retry-After"] = str(retry_after_s)
    return response


@web.middleware
async def admission_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Render a full queue as 429 and an unreachable store as 503, both with Retry-After.
    Sits inside `problem_middleware`, which renders every other error."""
    try:
        return await handler(request)
    except QueueFull as exc:
        return _refusal(exc, QUEUE_FULL_RETRY_AFTER_S)
    except QuotaExceeded as exc:
        return _refusal(exc, exc.retry_after_s)
    except InputsFull as exc:
        return _refusal(exc, INPUTS_FULL_RETRY_AFTER_S)
    except StoreError as exc:
        return _refusal(exc, STORE_DOWN_RETRY_AFTER_S)
    except RedisError as exc:
        return _refusal(StoreError(f"redis: {exc}"), STORE_DOWN_RETRY_AFTER_S)
