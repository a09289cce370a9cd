"""The job scripts: one `.lua` file per state change, shipped inside the package.

Each script is the shared prelude (`lua/_lib.lua`, after constants generated from the job
model so Lua and Python agree on the queue score) followed by its own file. `Scripts`
registers them on one client; redis-py's `register_script` sends EVALSHA and falls back to
EVAL (loading the script) on NOSCRIPT, e.g. after a server restart or failover.
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable, Coroutine, Mapping, Sequence
from importlib import resources
from typing import Any, Literal, ParamSpec, TypeVar

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from comfyfleet.errors import ComfyfleetError, InvalidTransition, NotFound, NotOwner, StoreError
from comfyfleet.models.job import MAX_PRIORITY, Job, JobStatus

ScriptName = Literal[
    "enqueue",
    "claim",
    "renew",
    "complete",
    "fail",
    "release",
    "cancel",
    "finish_cancelled",
    "requeue_expired",
    "reap_node",
]
SCRIPT_NAMES: tuple[ScriptName, ...] = (
    "enqueue",
    "claim",
    "renew",
    "complete",
    "fail",
    "release",
    "cancel",
    "finish_cancelled",
    "requeue_expired",
    "reap_node",
)
# The queue score is (MAX_PRIORITY - priority) * SEQ_SHIFT + seq: priority above a sequence
# of up to 2**40 enqueues, and at most 201 * 2**40 < 2**53, so a double holds it exactly.
SEQ_SHIFT = 2**40
# The order of KEYS[1..5] in every job script (see lua/_lib.lua).
STATUS_ORDER = (
    JobStatus.QUEUED,
    JobStatus.RUNNING,
    JobStatus.SUCCEEDED,
    JobStatus.FAILED,
    JobStatus.CANCELLED,
)
COUNTERS = (
    "enqueued",
    "claimed",
    "succeeded",
    "failed",
    "cancelled",
    "retried",
    "expired",
    "released",
    "stale",
)


def _read(name: str) -> str:
    return resources.files("comfyfleet.store").joinpath("lua", name).read_text("utf-8")


@functools.cache
def source(name: ScriptName) -> str:
    """The full text sent to Redis for one script (prelude + its file)."""
    constants = f"local MAX_PRIORITY = {MAX_PRIORITY}\nlocal SEQ_SHIFT = {SEQ_SHIFT}\n"
    from comfyfleet.store import histograms  # it uses this module's helpers

    constants += histograms.lua_bounds()
    prelude = _read("_observe.lua") + "\n" + _read("_lib.lua")
    return constants + prelude + "\n" + _read(f"{name}.lua")


class Scripts:
    """The job scripts registered on one client (registering costs nothing on the server)."""

    def __init__(self, redis: aioredis.Redis) -> None:
        self._scripts = {name: redis.register_script(source(name)) for name in SCRIPT_NAMES}

    async def run(self, name: ScriptName, keys: Sequence[str], args: Sequence[str | int]) -> Any:
        """Run one script; KEYS and ARGV as its header documents."""
        return await self._scripts[name](keys=list(keys), args=list(args))


# -- replies ----------------------------------------------------------------------------

P = ParamSpec("P")
R = TypeVar("R")


def guarded(fn: Callable[P, Awaitable[R]]) -> Callable[P, Coroutine[Any, Any, R]]:
    """Turn a Redis failure into StoreError (retryable, 503) at the API edge."""

    @functools.wraps(fn)
    async def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return await fn(*args, **kwargs)
        except RedisError as exc:
            raise StoreError(f"redis: {exc}") from exc

    return wrapper


def text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def fields_of(raw: Mapping[Any, Any]) -> dict[str, str]:
    """A hash reply (bytes or str, whatever the client decodes) as str -> str."""
    return {text(k): text(v) for k, v in raw.items()}


def job_of(flat: Sequence[bytes | str]) -> Job:
    """A Job from an HGETALL reply of a script (a flat field/value list)."""
    items = [text(v) for v in flat]
    return Job.from_fields(dict(zip(items[::2], items[1::2], strict=True)))


def refusal(reply: Sequence[Any], job_id: str, node_id: str | None) -> ComfyfleetError:
    kind = text(reply[0])
    if kind == "missing":
        return NotFound(f"no job {job_id!r}", job_id=job_id)
    if kind == "terminal":
        status = text(reply[1])
        return InvalidTransition(f"job {job_id} already {status}", job_id=job_id, status=status)
    status, owner = text(reply[1]), text(reply[2])
    return NotOwner(
        f"node {node_id!r} does not hold the lease of job {job_id} "
        f"(status {status}, owner {owner or 'none'})",
        job_id=job_id,
        status=status,
    )
