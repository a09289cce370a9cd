"""Calling Lua scripts: one typed wrapper per script, named arguments, keys from keys.py.

Every script is called as `script(keys, args)`: KEYS in the order its header lists, and
`args` a frozen dataclass of its named arguments, sent as one JSON object in ARGV[1] that
the script reads as `A.<name>` (bytes that are not text, such as an uploaded image, follow
in ARGV[2..] and are named in the script's header). No script works out a key name itself:
keys it cannot know in advance (ids it pops) are built from prefixes made in `keys.py`.

The job scripts (`lua/<name>.lua` after the prelude `lua/_lib.lua` and constants generated
from the job model) also get the store's namespace context `NS` (key prefixes, channels,
limits) from ARGV[1] and their own arguments from ARGV[2]. redis-py's `register_script`
sends EVALSHA and falls back to EVAL (loading the script) on NOSCRIPT, e.g. after a server
restart or failover.
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable, Coroutine, Mapping, Sequence
from dataclasses import dataclass
from importlib import resources
from typing import Any, Generic, ParamSpec, TypeVar

import orjson
import redis.asyncio as aioredis
from redis.exceptions import RedisError, ResponseError

from comfyfleet.errors import (
    ComfyfleetError,
    InvalidTransition,
    NotFound,
    NotOwner,
    StoreError,
    StoreFull,
)
from comfyfleet.models.job import (
    ANY_CAPABILITY,
    DEFAULT_OWNER,
    FOLDED_JOBLOG,
    FOLDED_JOBLOG_MAX,
    FOLDED_LOG,
    MAX_PRIORITY,
    Job,
    JobErrorCode,
    JobStatus,
)
from comfyfleet.store.keys import Keys

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

# How long usage accounting keeps each day's figures after the day ends (store/usage.py).
USAGE_KEEP_DAYS = 90
DAY_MS = 86_400_000
# The serve-set name of nodes that have published no inventory: they run jobs of
# ANY_CAPABILITY only (jobs queued without routing, e.g. straight through the store).
NO_DIGEST = "*"
# The field of {ns}:vtime:<pool> holding the pool's system virtual time (no owner starts
# with "~").
SYSTEM_VT = "~system"
# The GPU time (ms) a claim charges for a job of a class with no finished job yet; a
# finished job's real time replaces it, and teaches the class's moving average
# (weight COST_EWMA per job).
DEFAULT_COST_MS = 1000
COST_EWMA = 0.2

Args = TypeVar("Args")
# What Redis answers a write (or a script's first write) while used memory is above
# maxmemory under the noeviction policy ("OOM command not allowed when used memory >
# 'maxmemory'"; the "OOM" code is cut off the message inside scripts).
OOM_REPLY = "used memory > 'maxmemory'"


def read_lua(name: str) -> str:
    """The text of `lua/<name>.lua` inside the package."""
    return resources.files("comfyfleet.store").joinpath("lua", f"{name}.lua").read_text("utf-8")


ARGS_PRELUDE = "local A = cjson.decode(ARGV[1])\n"


class Script(Generic[Args]):
    """One Lua script registered on one client, called with its named arguments `Args`
    (a frozen dataclass) as `A` and, for job scripts, the namespace context as `NS`."""

    def __init__(self, redis: aioredis.Redis, source: str, *, context: bytes | None = None):
        self._script = redis.register_script(source)
        self._context = [context] if context is not None else []

    async def __call__(self, keys: Sequence[str], args: Args, *blobs: bytes) -> Any:
        argv = [*self._context, orjson.dumps(args), *blobs]
        return await self._script(keys=list(keys), args=argv)


def standalone(redis: aioredis.Redis, name: str, *, clock: bool = False) -> Script[Any]:
    """A script that stands alone (`lua/<name>.lua`, no job prelude): it reads `A`, and
    with `clock` may call `clock_ms(key)` (lua/_clock.lua) for the fleet's time."""
    prelude = ARGS_PRELUDE + (read_lua("_clock") + "\n" if clock else "")
    return Script(redis, prelude + read_lua(name))


@dataclass(frozen=True)
class NoArgs:
    """For a script that takes no arguments."""


# -- job scripts --------------------------------------------------------------------------


@dataclass(frozen=True)
class Namespace:
    """What every job script may need besides its own arguments (`NS` in Lua): key
    prefixes and channels from keys.py, for keys built from ids a script pops, and the
    store's limits. The same for every call of one store."""

    job_prefix: str
    events_prefix: str
    joblog_prefix: str
    queue_prefix: str
    owned_prefix: str
    ready_prefix: str
    tenant_prefix: str
    workflow_prefix: str
    fair_prefix: str
    serve_prefix: str
    cover_prefix: str
    active_prefix: str
    parked_prefix: str
    vtime_prefix: str
    cost_prefix: str
    depth: str
    wake_channel: str
    cancel_channel: str
    webhook_ended: str
    webhook_fleet: str
    clock_key: str
    hist: str
    stats_ended: str
    usage_prefix: str
    usage_total: str
    usage_keep_ms: int
    events_maxlen: int
    retention_ms: int
    events_grace_ms: int

    @classmethod
    def of(
        cls, keys: Keys, *, events_maxlen: int, retention_ms: int, events_grace_ms: int
    ) -> Namespace:
        return cls(
            job_prefix=keys.job_prefix(),
            events_prefix=keys.events_prefix(),
            joblog_prefix=keys.job_log_prefix(),
            queue_prefix=keys.queue_prefix(),
            owned_prefix=keys.owned_prefix(),
            ready_prefix=keys.ready_prefix(),
            tenant_prefix=keys.tenant_prefix(),
            workflow_prefix=keys.workflow_prefix(),
            depth=keys.depth,
            **keys.scheduling_prefixes(),
            wake_channel=keys.wake_channel,
            cancel_channel=keys.cancel_channel,
            webhook_ended=keys.webhook_ended,
            webhook_fleet=keys.webhook_fleet,
            clock_key=keys.clock,
            hist=keys.hist,
            stats_ended=keys.stats_ended,
            usage_prefix=keys.usage_prefix,
            usage_total=keys.usage_total,
            usage_keep_ms=USAGE_KEEP_DAYS * DAY_MS,
            events_maxlen=events_maxlen,
            retention_ms=retention_ms,
            events_grace_ms=events_grace_ms,
        )


@dataclass(frozen=True)
class EnqueueArgs:
    job_id: str
    idempotency_ttl_ms: int
    queue_limit: int  # refuse when the pool's queue holds this many jobs; 0: no bound
    fields: dict[str, str]  # the job hash (Job.to_fields); seq is assigned by the script


@dataclass(frozen=True)
class ClaimArgs:
    node_id: str
    pools: list[str]  # the pools of the serve keys, in KEYS order
    capacity: int
    lease_ms: int
    promote_limit: int
    ready_within_ms: int  # a node last seen ready longer ago does not count as ready
    scan: int


@dataclass(frozen=True)
class RenewArgs:
    job_id: str
    node_id: str
    lease_ms: int
    attempt: int = 0  # the lease is (node, attempt); 0: any attempt of the node


@dataclass(frozen=True)
class CompleteArgs:
    job_id: str
    node_id: str
    outputs_json: str
    attempt: int = 0  # the lease is (node, attempt); 0: any attempt of the node
    # The hash's form (models/job.py stored_outputs): outputs_json less the keys named after
    # output_pool and output_tag ('': keep outputs_json), used when the job's own pool and
    # attempt tag are those.
    stored_outputs_json: str = ""
    output_pool: str = ""
    output_tag: str = ""


@dataclass(frozen=True)
class FailArgs:
    job_id: str
    node_id: str
    error_json: str
    retryable: bool
    backoff_ms: int
    attempt: int = 0  # the lease is (node, attempt); 0: any attempt of the node


@dataclass(frozen=True)
class OwnerArgs:
    """release and finish_cancelled: the owner's write needs nothing else."""

    job_id: str
    node_id: str
    attempt: int = 0  # the lease is (node, attempt); 0: any attempt of the node


@dataclass(frozen=True)
class CancelArgs:
    job_id: str


@dataclass(frozen=True)
class RequeueExpiredArgs:
    limit: int


@dataclass(frozen=True)
class ReapNodeArgs:
    node_id: str
    lost_after_ms: int  # lost when last seen this long ago or longer


def _lua_codes() -> str:
    """JobErrorCode as a Lua table that refuses unknown names, so a misspelt code in a
    script fails loudly instead of writing nil."""
    entries = ", ".join(f"{code.value} = '{code.value}'" for code in JobErrorCode)
    return (
        f"local CODE = setmetatable({{ {entries} }}, {{ __index = function(_, name)\n"
        "  error('unknown job error code ' .. tostring(name)) end })\n"
    )


@functools.cache
def source(name: str) -> str:
    """The full text sent to Redis for one job script (constants, prelude, its file)."""
    constants = f"local MAX_PRIORITY = {MAX_PRIORITY}\nlocal SEQ_SHIFT = {SEQ_SHIFT}\n"
    constants += f"local DEFAULT_OWNER = '{DEFAULT_OWNER}'\nlocal ANY_CLASS = '{ANY_CAPABILITY}'\n"
    constants += f"local NO_DIGEST = '{NO_DIGEST}'\nlocal SYSTEM_VT = '{SYSTEM_VT}'\n"
    constants += f"local DEFAULT_COST_MS = {DEFAULT_COST_MS}\nlocal COST_EWMA = {COST_EWMA}\n"
    constants += f"local FOLDED_LOG = '{FOLDED_LOG}'\nlocal FOLDED_JOBLOG = '{FOLDED_JOBLOG}'\n"
    constants += f"local FOLDED_JOBLOG_MAX = {FOLDED_JOBLOG_MAX}\n"
    from comfyfleet.store import histograms  # it uses this module's helpers

    constants += histograms.lua_bounds() + _lua_codes()
    context = "local NS, A = cjson.decode(ARGV[1]), cjson.decode(ARGV[2])\n"
    clock = read_lua("_clock") + "\nlocal NOW = clock_ms(NS.clock_key)\n"
    prelude = context + clock + read_lua("_observe") + "\n" + read_lua("_usage") + "\n"
    prelude += read_lua("_quota") + "\n"
    prelude += read_lua("_lib")
    return constants + prelude + "\n" + read_lua(name)


# Each job script and the dataclass of its named arguments (tests check the script reads
# exactly these names).
JOB_SCRIPT_ARGS: dict[str, type] = {
    "enqueue": EnqueueArgs,
    "claim": ClaimArgs,
    "renew": RenewArgs,
    "complete": CompleteArgs,
    "fail": FailArgs,
    "release": OwnerArgs,
    "cancel": CancelArgs,
    "finish_cancelled": OwnerArgs,
    "requeue_expired": RequeueExpiredArgs,
    "reap_node": ReapNodeArgs,
}


class JobScripts:
    """The job scripts registered on one client, each typed by its arguments."""

    def __init__(self, redis: aioredis.Redis, namespace: Namespace) -> None:
        context = orjson.dumps(namespace)

        def script(name: str) -> Script[Any]:
            return Script(redis, source(name), context=context)

        self.enqueue: Script[EnqueueArgs] = script("enqueue")
        self.claim: Script[ClaimArgs] = script("claim")
        self.renew: Script[RenewArgs] = script("renew")
        self.complete: Script[CompleteArgs] = script("complete")
        self.fail: Script[FailArgs] = script("fail")
        self.release: Script[OwnerArgs] = script("release")
        self.cancel: Script[CancelArgs] = script("cancel")
        self.finish_cancelled: Script[OwnerArgs] = script("finish_cancelled")
        self.requeue_expired: Script[RequeueExpiredArgs] = script("requeue_expired")
        self.reap_node: Script[ReapNodeArgs] = script("reap_node")


# -- replies ----------------------------------------------------------------------------

P = ParamSpec("P")
R = TypeVar("R")


def guarded(fn: Callable[P, Awaitable[R]]) -> Callable[P, Coroutine[Any, Any, R]]:
    """Turn a Redis failure into StoreError (retryable, 503) at the API edge; a write
    refused because Redis is at its memory limit (`maxmemory`, noeviction) into StoreFull
    (507): nothing was written, and the same call succeeds once memory frees."""

    @functools.wraps(fn)
    async def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return await fn(*args, **kwargs)
        except ResponseError as exc:
            if OOM_REPLY in str(exc):
                raise StoreFull(f"redis is at its memory limit: {exc}") from exc
            raise StoreError(f"redis: {exc}") from exc
        except RedisError as exc:
            raise StoreError(f"redis: {exc}") from exc

    return wrapper


def text(value: Any) -> str:
    """A Redis reply value as str, whether or not the client decodes responses."""
    return value.decode() if isinstance(value, bytes) else str(value)


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
