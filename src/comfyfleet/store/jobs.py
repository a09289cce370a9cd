"""The job store: every job state change as one Lua script (see `store/lua/`), plus the
reads the balancer and nodes need.

Leases: `claim` records owner + deadline (now + lease_ms); only that owner may `renew`,
`complete`, `fail`, `release` or `finish_cancelled`, and only while the job runs. Once the
deadline passes, `requeue_expired` (the reaper) takes the job back; a late write by the old
owner is then refused with NotOwner (or InvalidTransition once the job has finished), so the
visible outcome is decided exactly once. The lease is (node, attempt): owner writes may
name the attempt they are about (`attempt=`), so a node that lost a lease and claimed the
job again cannot settle the new attempt with a late write about the old. Every time a
script stamps or compares is the fleet's clock (Redis TIME, lua/_clock.lua), never the
caller's; `now_ms` reads it.
"""

from __future__ import annotations

import asyncio
import math
import re
import uuid
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import orjson
import redis.asyncio as aioredis

from comfyfleet.clock import SYSTEM_CLOCK, Clock
from comfyfleet.config import DEFAULT_EVENTS_GRACE_MS, RedisConfig
from comfyfleet.errors import (
    BadRequest,
    ComfyfleetError,
    Conflict,
    NotAllowed,
    QuotaExceeded,
    ValidationFailed,
)
from comfyfleet.models.job import (
    ANY_CAPABILITY,
    DEFAULT_OWNER,
    DEFAULT_POOL,
    MAX_PRIORITY,
    MIN_PRIORITY,
    Job,
    JobError,
    JobSpec,
    JobStatus,
    OutputRef,
    stored_outputs,
)
from comfyfleet.store.connect import connect
from comfyfleet.store.events import BLOCK_SLICE_MS, LOG_START, EventLog, WakeListener
from comfyfleet.store.keys import Keys
from comfyfleet.store.nodes import DEFAULT_LOST_AFTER_MS
from comfyfleet.store.scripts import (
    COUNTERS,
    NO_DIGEST,
    STATUS_ORDER,
    CancelArgs,
    ClaimArgs,
    CompleteArgs,
    EnqueueArgs,
    FailArgs,
    JobScripts,
    Namespace,
    NoArgs,
    OwnerArgs,
    ReapNodeArgs,
    RenewArgs,
    RequeueExpiredArgs,
    Script,
    fields_of,
    guarded,
    job_of,
    refusal,
    standalone,
    text,
)

DEFAULT_RETENTION_MS = 7 * 24 * 3600 * 1000
DEFAULT_IDEMPOTENCY_TTL_MS = 24 * 3600 * 1000
DEFAULT_EVENTS_MAXLEN = 1000
# Most due delayed jobs one claim or reaper pass moves back to their queues.
PROMOTE_LIMIT = 1000
# One list_jobs call reads the index at most this many times to fill a page whose entries
# turned out to be expired jobs.
LIST_ROUNDS = 4
# Page sizes of a job listing: the API handler and its OpenAPI entry read these.
DEFAULT_PAGE = 50
MAX_PAGE = 200
# Most capability classes, tenants and queue entries one claim looks at per pool to find a
# job the claiming node should take (see claim.lua): bounds the cost of a claim whatever
# the queues hold.
CLAIM_SCAN = 32
# What a tenant refused at its max_queued is told to wait (s): about the time a few of its
# queued jobs take to start.
QUOTA_RETRY_AFTER_S = 5
_JOB_ID = re.compile(r"^[A-Za-z0-9_.:-]{1,128}$")


@dataclass(frozen=True)
class Placed:
    """What `enqueue_placed` answers. `queue_position`: 0 = its owner's next of its class;
    None for an idempotent replay (the job may have moved on since)."""

    job: Job
    created: bool
    queue_position: int | None


class QueueFull(ComfyfleetError):
    """The pool's queue holds as many jobs as its bound allows; the job was not accepted."""

    status = 429
    code = "queue-full"
    title = "Queue full"
    retryable = True


def _refused(spec: JobSpec, reply: Sequence[Any]) -> ComfyfleetError:
    """The error for a tenant's limit that refused `spec` (see lua/_quota.lua)."""
    kind, limit = text(reply[0]), text(reply[1])
    if kind == "denied":
        allowed = text(reply[2])
        asked = {"workflows": spec.workflow or "_graph", "pools": spec.pool,
                 "max_priority": spec.priority}[limit]  # fmt: skip
        return NotAllowed(
            f"{spec.owner} may not submit {limit}={asked}: its limits allow {allowed}",
            limit=limit, owner=spec.owner, allowed=allowed,
        )  # fmt: skip
    if limit == "rate":
        wait_ms = int(reply[3])
        return QuotaExceeded(
            f"{spec.owner} submits faster than its rate of {float(text(reply[2])):g}/s; "
            f"the next submit is allowed in {wait_ms} ms",
            limit=limit, retry_after_s=max(1, math.ceil(wait_ms / 1000)), owner=spec.owner,
        )  # fmt: skip
    bound, count = int(reply[2]), int(reply[3])
    return QuotaExceeded(
        f"{spec.owner} has {count} queued jobs, its {limit} is {bound}",
        limit=limit, retry_after_s=QUOTA_RETRY_AFTER_S, owner=spec.owner, bound=bound,
    )  # fmt: skip


class JobStore:
    """Jobs, queues, leases and events in Redis. Times in ms unless a name says `_s`."""

    def __init__(
        self,
        redis: aioredis.Redis,
        keys: Keys,
        clock: Clock = SYSTEM_CLOCK,
        *,
        retention_ms: int = DEFAULT_RETENTION_MS,
        idempotency_ttl_ms: int = DEFAULT_IDEMPOTENCY_TTL_MS,
        events_maxlen: int = DEFAULT_EVENTS_MAXLEN,
        events_grace_ms: int = DEFAULT_EVENTS_GRACE_MS,
    ) -> None:
        self.redis = redis
        self.keys = keys
        self.clock = clock
        self.retention_ms = retention_ms
        self.idempotency_ttl_ms = idempotency_ttl_ms
        self.events_maxlen = events_maxlen
        context = Namespace.of(keys, events_maxlen=events_maxlen, retention_ms=retention_ms,
                               events_grace_ms=events_grace_ms)  # fmt: skip
        self._scripts = JobScripts(redis, context)
        self._events = EventLog(redis, keys, maxlen=events_maxlen)
        self._wake = WakeListener(redis, keys.wake_channel)
        self._status_keys = [keys.jobs_by_status(s) for s in STATUS_ORDER]
        self._clock_now: Script[NoArgs] = standalone(redis, "clock_now", clock=True)
        self._owns_client = False
        # Capability routing (store/routing.py Router), set by the balancer: gives each
        # submitted job its capability class or refuses it. None: jobs keep the class
        # their spec names (ANY_CAPABILITY unless given).
        self.router: Callable[[JobSpec], Awaitable[JobSpec]] | None = None

    @classmethod
    def from_config(cls, cfg: RedisConfig, clock: Clock = SYSTEM_CLOCK, **limits: int) -> JobStore:
        """A store with a client of its own (see `connect`), which `close` closes. `limits`:
        the keyword arguments of the constructor (retention_ms, ...)."""
        store = cls(connect(cfg), Keys(cfg.namespace), clock, **limits)
        store._owns_client = True
        return store

    async def close(self) -> None:
        """Stop the wake-up listener; close the client only if `from_config` made it."""
        await self._wake.close()
        if self._owns_client:
            await self.redis.aclose()

    # -- state changes: one script each -------------------------------------------------

    async def enqueue(
        self,
        spec: JobSpec,
        *,
        job_id: str | None = None,
        idempotency_key: str | None = None,
        queue_limit: int | None = None,
    ) -> tuple[Job, bool]:
        """Queue a new job; returns (job, created). A known `idempotency_key` of the same
        owner (within the idempotency TTL) returns the job it created before, with
        created=False; another owner's use of the same key is a key of its own.
        `queue_limit`: QueueFull when the pool's queue already holds that many jobs (checked
        in the same atomic step; None or 0: no bound). QuotaExceeded (limit `max_queued`)
        when the owner's tenant record has a max_queued its queued jobs already reach.
        With a `router` (the balancer's), the job gets its capability class first, or
        NoCapableNode (400) when no registered node can run it."""
        placed = await self.enqueue_placed(
            spec, job_id=job_id, idempotency_key=idempotency_key, queue_limit=queue_limit
        )
        return placed.job, placed.created

    @guarded
    async def enqueue_placed(
        self,
        spec: JobSpec,
        *,
        job_id: str | None = None,
        idempotency_key: str | None = None,
        queue_limit: int | None = None,
    ) -> Placed:
        """`enqueue`, also answering the new job's queue position from the same script (the
        submit handler shows it; a read of its own would cost a round trip)."""
        if not MIN_PRIORITY <= spec.priority <= MAX_PRIORITY:
            raise ValidationFailed(
                f"priority {spec.priority} outside {MIN_PRIORITY}..{MAX_PRIORITY}",
                field="priority",
            )
        job_id = job_id or uuid.uuid4().hex
        if not _JOB_ID.match(job_id):
            raise ValidationFailed(f"invalid job id {job_id!r}", field="job_id")
        if self.router is not None:
            spec = await self.router(spec)
        # created_ms / updated_ms are stamped by the script, from the fleet's clock.
        job = Job(
            id=job_id,
            idempotency_key=idempotency_key,
            **spec.model_dump(),
        )
        keys = [
            *self._status_keys,
            self.keys.job(job_id),
            self.keys.depth,
            self.keys.seq,
            self.keys.events(job_id),
            self.keys.stats,
            self.keys.tenant(spec.owner),
            self.keys.jobs_of_owner(spec.owner),
        ]
        if idempotency_key is not None:
            keys.append(self.keys.idempotency(spec.owner, idempotency_key))
        args = EnqueueArgs(
            job_id=job_id,
            idempotency_ttl_ms=self.idempotency_ttl_ms,
            queue_limit=max(0, queue_limit or 0),
            fields=job.to_fields(),
        )
        reply = await self._scripts.enqueue(keys, args)
        if text(reply[0]) == "conflict":
            raise Conflict(f"job id {job_id!r} is taken", job_id=job_id)
        if text(reply[0]) == "full":
            raise QueueFull(
                f"pool {spec.pool!r} has {int(reply[1])} queued jobs, its bound is {queue_limit}",
                pool=spec.pool,
                limit=queue_limit,
            )
        if text(reply[0]) in ("quota", "denied"):
            raise _refused(spec, reply)
        created = text(reply[0]) == "ok"
        return Placed(job_of(reply[1]), created, int(reply[2]) if created else None)

    @guarded
    async def claim(
        self,
        node_id: str,
        *,
        pools: Sequence[str] = (DEFAULT_POOL,),
        capacity: int = 1,
        lease_ms: int,
        ready_within_ms: int = DEFAULT_LOST_AFTER_MS,
        digest: str | None = None,
    ) -> list[Job]:
        """Lease up to `capacity` jobs to `node_id` for `lease_ms` ms. In each pool, the
        tenant with the least GPU time per weight goes first, its best job (priority, then
        oldest); across `pools`, the better of those (priority, then oldest). Only jobs of
        capability classes the node's inventory `digest` covers (None: a node with no
        inventory, which runs jobs queued without a capability only). Due delayed jobs
        are promoted first. [] when idle. A job that avoids `node_id` is left to other
        nodes seen ready (in the ready index) within the last `ready_within_ms` ms; with
        none, this node takes it."""
        if lease_ms <= 0:
            raise ValueError("lease_ms must be positive")
        if capacity <= 0 or not pools:
            return []
        keys = [
            *self._status_keys,
            self.keys.running,
            self.keys.delayed,
            self.keys.owned(node_id),
            self.keys.stats,
            *(self.keys.serve(pool, digest or NO_DIGEST) for pool in dict.fromkeys(pools)),
        ]
        args = ClaimArgs(
            node_id=node_id,
            pools=list(dict.fromkeys(pools)),
            capacity=capacity,
            lease_ms=lease_ms,
            promote_limit=PROMOTE_LIMIT,
            ready_within_ms=ready_within_ms,
            scan=CLAIM_SCAN,
        )
        reply = await self._scripts.claim(keys, args)
        return [job_of(fields) for fields in reply]

    @guarded
    async def renew(self, job_id: str, node_id: str, *, lease_ms: int, attempt: int = 0) -> bool:
        """Push the lease deadline to now + `lease_ms` ms. False when `node_id` does not
        hold the lease of a running job (lost it, or the job ended): stop working on it."""
        keys = [*self._status_keys, self.keys.job(job_id), self.keys.running]
        keys.append(self.keys.events(job_id))
        args = RenewArgs(job_id, node_id, lease_ms, attempt)
        return int(await self._scripts.renew(keys, args)) == 1

    @guarded
    async def complete(
        self, job_id: str, node_id: str, outputs: Sequence[OutputRef], *, attempt: int = 0
    ) -> Job:
        """The owner records success. NotOwner / InvalidTransition (finished) / NotFound."""
        payload = orjson.dumps([o.model_dump(mode="json") for o in outputs]).decode()
        stored, pool, tag = stored_outputs(job_id, outputs) or ("", "", "")
        args = CompleteArgs(job_id, node_id, payload, attempt, stored, pool, tag)
        reply = await self._scripts.complete(self._owner_keys(job_id, node_id), args)
        return self._answer(reply, job_id, node_id)

    @guarded
    async def fail(
        self, job_id: str, node_id: str, error: JobError, *, backoff_ms: int = 0, attempt: int = 0
    ) -> Job:
        """The owner reports a failed attempt. Retryable with attempts left: queued again at
        its place, claimable from now + `backoff_ms` ms. Else failed. Cancel requested:
        cancelled. Same refusals as `complete`."""
        if error.node_id is None:
            error = error.model_copy(update={"node_id": node_id})
        keys = [*self._owner_keys(job_id, node_id), self.keys.delayed]
        args = FailArgs(
            job_id=job_id,
            node_id=node_id,
            error_json=error.model_dump_json(),
            retryable=error.retryable,
            backoff_ms=max(0, backoff_ms),
            attempt=attempt,
        )
        return self._answer(await self._scripts.fail(keys, args), job_id, node_id)

    @guarded
    async def release(self, job_id: str, node_id: str, *, attempt: int = 0) -> Job:
        """The owner hands the job back untried: queued at its place, attempt not counted
        (cancelled instead if a cancel was requested). Same refusals as `complete`."""
        args = OwnerArgs(job_id, node_id, attempt)
        keys = self._owner_keys(job_id, node_id)
        return self._answer(await self._scripts.release(keys, args), job_id, node_id)

    @guarded
    async def cancel(self, job_id: str) -> Job:
        """Queued or backing off: cancelled now. Running: `cancel_requested` set and the id
        published on `keys.cancel_channel`; the owner stops and calls `finish_cancelled`.
        Finished: returned unchanged. NotFound for an unknown job."""
        keys = [
            *self._status_keys,
            self.keys.job(job_id),
            self.keys.delayed,
            self.keys.events(job_id),
            self.keys.stats,
        ]
        args = CancelArgs(job_id)
        return self._answer(await self._scripts.cancel(keys, args), job_id, None)

    @guarded
    async def finish_cancelled(self, job_id: str, node_id: str, *, attempt: int = 0) -> Job:
        """The owner reports the job stopped: running -> cancelled."""
        args = OwnerArgs(job_id, node_id, attempt)
        keys = self._owner_keys(job_id, node_id)
        return self._answer(await self._scripts.finish_cancelled(keys, args), job_id, node_id)

    @guarded
    async def requeue_expired(self, *, limit: int = 100) -> list[str]:
        """Take back up to `limit` running jobs whose lease deadline passed: requeued at
        their place (attempt recorded as `lease_expired`), failed when out of attempts, or
        cancelled when a cancel was requested. Returns their ids. Safe to run concurrently."""
        keys = [*self._status_keys, self.keys.running, self.keys.delayed, self.keys.stats]
        args = RequeueExpiredArgs(limit)
        reply = await self._scripts.requeue_expired(keys, args)
        return [text(job_id) for job_id in reply]

    @guarded
    async def reap_node(self, node_id: str, *, lost_after_ms: int) -> tuple[bool, list[str]]:
        """If `node_id` was last seen `lost_after_ms` ms ago or longer (by the fleet's clock),
        mark it lost and take back every job it holds (requeued avoiding it, or failed when
        out of attempts, or cancelled). Returns (marked now, ids taken back); marked is True
        for exactly one of any number of concurrent callers. A node seen since then is left
        alone: (False, [])."""
        keys = [*self._status_keys, self.keys.running, self.keys.stats, self.keys.nodes]
        keys += [self.keys.owned(node_id), self.keys.lost]
        args = ReapNodeArgs(node_id, lost_after_ms)
        reply = await self._scripts.reap_node(keys, args)
        return int(reply[0]) == 1, [text(job_id) for job_id in reply[1:]]

    def _owner_keys(self, job_id: str, node_id: str) -> list[str]:
        return [
            *self._status_keys,
            self.keys.job(job_id),
            self.keys.running,
            self.keys.owned(node_id),
            self.keys.events(job_id),
            self.keys.stats,
        ]

    @staticmethod
    def _answer(reply: Sequence[Any], job_id: str, node_id: str | None) -> Job:
        if text(reply[0]) != "ok":
            raise refusal(reply, job_id, node_id)
        return job_of(reply[1])

    # -- reads -------------------------------------------------------------------------

    @guarded
    async def memory_full(self) -> str | None:
        """Why Redis refuses writes for lack of memory (used >= maxmemory), or None."""
        info: Any = await self.redis.info("memory")
        used, limit = int(info.get("used_memory", 0)), int(info.get("maxmemory", 0))
        if limit and used >= limit:
            return (
                f"redis is full: {used} of its maxmemory {limit} bytes used; submits are "
                "refused (507) until memory frees"
            )
        return None

    @guarded
    async def now_ms(self) -> int:
        """The fleet's time (ms since the epoch): what the scripts stamp and compare."""
        return int(await self._clock_now([self.keys.clock], NoArgs()))

    @guarded
    async def get(self, job_id: str) -> Job | None:
        fields = await self.redis.hgetall(self.keys.job(job_id))
        return Job.from_fields(fields_of(fields), job_id) if fields else None

    @guarded
    async def owner_of(self, job_id: str) -> str | None:
        """Who submitted the job (a Principal label), or None for an unknown job."""
        fields: Any = await self.redis.hmget(self.keys.job(job_id), ["status", "owner"])
        if fields[0] is None:
            return None
        return text(fields[1]) if fields[1] is not None else DEFAULT_OWNER

    @guarded
    async def list_jobs(
        self,
        *,
        status: JobStatus | None = None,
        owner: str | None = None,
        cursor: str | None = None,
        limit: int = DEFAULT_PAGE,
    ) -> tuple[list[Job], str | None]:
        """Newest first, `limit` at most (1..MAX_PAGE). Returns the page and the cursor of the
        next one (None: no more). `owner`: that owner's jobs only (its own index; with a
        `status` too, a page may hold fewer than `limit` and still have a next cursor).
        Entries of expired jobs are dropped from the index here."""
        if not 1 <= limit <= MAX_PAGE:
            raise BadRequest(f"limit must be 1..{MAX_PAGE}")
        if owner is not None:
            indexes = [self.keys.jobs_of_owner(owner)]
        elif status is None:
            indexes = self._status_keys  # every job is in exactly one of them
        else:
            indexes = [self.keys.jobs_by_status(status)]
        upper = "+inf" if cursor is None else f"({self._parse_cursor(cursor)}"
        jobs: list[Job] = []
        for _ in range(LIST_ROUNDS):
            want = limit - len(jobs)
            # One entry more than needed tells whether a next page exists.
            entries = await self._newest(indexes, upper, want + 1)
            more, entries = len(entries) > want, entries[:want]
            ids = [text(member) for member, _ in entries]
            jobs += await self._load_listed(ids, status, owner)
            if not more:
                return jobs, None
            upper = f"({int(entries[-1][1])}"
            if len(jobs) >= limit:
                break
        return jobs, upper[1:]

    async def _newest(self, indexes: list[str], upper: str, n: int) -> list[tuple[Any, float]]:
        """The `n` entries of highest score below `upper` across `indexes`, highest first;
        read in one MULTI, so a job moving between status indexes is seen once."""
        async with self.redis.pipeline(transaction=len(indexes) > 1) as pipe:
            for index in indexes:
                pipe.zrevrangebyscore(index, upper, "-inf", start=0, num=n, withscores=True)
            replies = await pipe.execute()
        merged: list[tuple[Any, float]] = [entry for reply in replies for entry in reply]
        return sorted(merged, key=lambda entry: entry[1], reverse=True)[:n]

    async def _load_listed(
        self, ids: list[str], status: JobStatus | None, owner: str | None
    ) -> list[Job]:
        async with self.redis.pipeline(transaction=False) as pipe:
            for job_id in ids:
                pipe.hgetall(self.keys.job(job_id))
            rows = await pipe.execute()
        gone = [job_id for job_id, fields in zip(ids, rows, strict=True) if not fields]
        if gone:
            # Finished jobs expire after the retention; their index entries go lazily here.
            async with self.redis.pipeline(transaction=False) as pipe:
                owners = [self.keys.jobs_of_owner(owner)] if owner is not None else []
                for index in (*self._status_keys, *owners):
                    pipe.zrem(index, *gone)
                await pipe.execute()
        jobs = [Job.from_fields(fields_of(fields), job_id)
                for job_id, fields in zip(ids, rows, strict=True) if fields]  # fmt: skip
        # A job may have moved on between the index read and the load: list it as it is now.
        return [job for job in jobs if status is None or job.status is status]

    @staticmethod
    def _parse_cursor(cursor: str) -> int:
        if not cursor.isdigit():
            raise BadRequest(f"invalid cursor {cursor!r}")
        return int(cursor)

    @guarded
    async def jobs_of(self, node_id: str) -> list[str]:
        """Ids of the jobs `node_id` holds a lease on, sorted."""
        return sorted(text(m) for m in await self.redis.smembers(self.keys.owned(node_id)))

    @guarded
    async def queue_position(self, job_id: str, job: Job | None = None) -> int | None:
        """How many queued jobs of the same owner and capability class come before this
        one (0: it is its owner's next). Which tenant's job a node takes next is fair
        share's choice (see `claim`), so a position across owners means nothing. None when
        not waiting in a queue (running, finished, unknown, or backing off). `job`: the
        job as the caller read it, saving a round trip (pool, owner and class never
        change)."""
        if job is not None:
            queue = self.keys.queue(job.pool, job.capability, job.owner)
        else:
            f = await self.redis.hmget(self.keys.job(job_id), ["pool", "capability", "owner"])
            if f[0] is None:
                return None
            pool, capability, owner = (text(v) if v else "" for v in f)
            queue = self.keys.queue(pool, capability or ANY_CAPABILITY, owner or DEFAULT_OWNER)
        rank: Any = await self.redis.zrank(queue, job_id)
        return None if rank is None else int(rank)

    @guarded
    async def queue_depth(self, pool: str = DEFAULT_POOL) -> int:
        """Jobs waiting in `pool` now (backing-off jobs not counted)."""
        return int(await self.redis.hget(self.keys.depth, pool) or 0)

    @guarded
    async def queue_depths(self) -> dict[str, int]:
        """Pool -> jobs waiting in it now, for every pool that ever had a job queued."""
        raw: Any = await self.redis.hgetall(self.keys.depth)
        return {text(pool): int(depth) for pool, depth in raw.items()}

    @guarded
    async def stats(self) -> dict[str, int]:
        """Counters since the namespace began (COUNTERS) plus gauges `running`, `delayed`."""
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.hgetall(self.keys.stats)
            pipe.zcard(self.keys.running)
            pipe.zcard(self.keys.delayed)
            counters, running, delayed = await pipe.execute()
        out = dict.fromkeys(COUNTERS, 0)
        out.update({text(k): int(v) for k, v in counters.items()})
        out.update(running=int(running), delayed=int(delayed))
        return out

    # -- events and wake-ups -----------------------------------------------------------

    @guarded
    async def append_event(self, job_id: str, kind: str, data: Mapping[str, Any]) -> str:
        """Append a `kind` event (e.g. "progress") to the job's log; returns its stream id."""
        return await self._events.append(job_id, kind, data)

    @guarded
    async def append_events(
        self, job_id: str, events: Sequence[tuple[str, Mapping[str, Any]]]
    ) -> None:
        """Append several events in order, in one round trip (see EventLog.append_many)."""
        await self._events.append_many(job_id, events)

    @guarded
    async def events(
        self, job_id: str, *, after: str = "0", count: int = 100, block_ms: int | None = None
    ) -> list[tuple[str, dict[str, Any]]]:
        """Events after stream id `after`, oldest first, as (id, {"type": ..., **data}).
        `block_ms`: wait up to that many ms for one when none is there; None: don't wait."""
        return await self._events.read(job_id, after=after, count=count, block_ms=block_ms)

    @guarded
    async def events_and_job(
        self, job_id: str, *, after: str, count: int = 100, block_ms: int
    ) -> tuple[list[tuple[str, dict[str, Any]]], Job | None]:
        """`events` (waiting up to `block_ms` ms for a first one), and the job as it is right
        after them, read in the same round trip (the HGETALL queued behind the blocking
        XREAD on one connection): a waiter that sees the job end needs no read of its own.
        On timeout: no events, and the job as it is then."""
        if after in LOG_START:  # the log may not be opened yet: see EventLog.read
            events = await self._events.read(job_id, after=after, count=count, block_ms=block_ms)
            return events, await self.get(job_id)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + block_ms / 1000
        job = None
        while (left_ms := int((deadline - loop.time()) * 1000)) > 0:
            async with self.redis.pipeline(transaction=False) as pipe:
                pipe.xread({self.keys.events(job_id): after}, count=count,
                           block=min(left_ms, BLOCK_SLICE_MS))  # fmt: skip
                pipe.hgetall(self.keys.job(job_id))
                reply, fields = await pipe.execute()
            job = Job.from_fields(fields_of(fields), job_id) if fields else None
            if reply or job is None:
                return EventLog.entries(reply), job
        return [], job if job is not None else await self.get(job_id)

    @guarded
    async def last_event(self, job_id: str, kind: str) -> dict[str, Any] | None:
        """The newest recent `kind` event of the job, flattened, or None."""
        return await self._events.last(job_id, kind)

    async def listen_for_work(self, timeout_s: float | None = None) -> bool:
        """Subscribe to wake-up hints now and wait up to `timeout_s` s (None: no limit)
        until the subscription is active. Optional: `wait_for_work` subscribes on first use."""
        return await self._wake.start(timeout_s)

    async def wait_for_work(self, timeout_s: float) -> bool:
        """True as soon as a job may be claimable (a wake-up hint arrived, now or since the
        last call); False after `timeout_s` s without one. Hints can be lost: call `claim`
        after either answer."""
        return await self._wake.wait(timeout_s)
