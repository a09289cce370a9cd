"""The webhook queue in Redis: what is due, who is sending it, what was given up.

- A job ends: `finish()` in lua/_lib.lua adds its id to `webhooks:ended` in the same atomic
  step (when it has a webhook URL, or a fleet-wide one is on), so no crash can lose it.
- A balancer's dispatcher `collect`s an ended job: one script takes it out of `ended` and
  queues its deliveries, so of racing replicas exactly one does.
- A delivery is a HASH (url, body, attempts, ...) plus its due time in `webhooks:due`.
  `claim` leases due ones to one sender (the score becomes the claim's deadline, so a
  sender that dies mid-request only delays the delivery); `settle` records done / retry /
  dead, and only the claim's holder may. Everything survives a balancer restart.
- Jobs that asked for progress or state webhooks sit in `webhooks:following`, leased the
  same way, with their read position in the event log kept in their `hook` record.

Times in ms. Nothing here speaks HTTP: balancer/webhooks.py sends.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import redis.asyncio as aioredis

from comfyfleet.store.keys import Keys
from comfyfleet.store.scripts import Script, fields_of, guarded, standalone, text

# How long a given-up delivery's record stays for inspection (ms).
DEAD_TTL_MS = 7 * 24 * 3600 * 1000
# How long a job's webhook options are kept (ms): at least as long as a job may live.
HOOK_TTL_MS = 8 * 24 * 3600 * 1000


@dataclass(frozen=True)
class CollectArgs:
    now_ms: int
    job_id: str
    guard: bool  # only if the job is still in `ended`, and take it out
    delivery_prefix: str
    deliveries: list[dict[str, str | int]]  # id, url, event, body, max_attempts


@dataclass(frozen=True)
class LeaseArgs:
    now_ms: int
    deadline_ms: int
    limit: int


@dataclass(frozen=True)
class ClaimArgs:
    now_ms: int
    deadline_ms: int
    limit: int
    delivery_prefix: str
    token: str


@dataclass(frozen=True)
class SettleArgs:
    token: str
    mode: str  # "done" | "retry" | "dead"
    now_ms: int
    when_ms: int  # retry: when to try again; dead: how long to keep the record
    error: str


@dataclass(frozen=True)
class NewDelivery:
    """A message to send: `event` is its type (e.g. "job.succeeded"), `body` the JSON."""

    url: str
    event: str
    body: bytes
    max_attempts: int
    id: str = ""

    def with_id(self) -> NewDelivery:
        if self.id:
            return self
        return NewDelivery(self.url, self.event, self.body, self.max_attempts,
                           "msg_" + uuid.uuid4().hex)  # fmt: skip


@dataclass(frozen=True)
class Delivery:
    """A claimed delivery. `attempts` counts this one; `claim` is the holder's token."""

    id: str
    job_id: str
    url: str
    event: str
    body: bytes
    attempts: int
    max_attempts: int
    created_ms: int
    claim: str
    last_error: str

    @classmethod
    def of(cls, raw: dict[str, str], body: bytes) -> Delivery:
        return cls(
            id=raw["id"], job_id=raw["job_id"], url=raw["url"], event=raw["event"], body=body,
            attempts=int(raw["attempts"]), max_attempts=int(raw["max_attempts"]),
            created_ms=int(raw["created_ms"]), claim=raw["claim"], last_error=raw["last_error"],
        )  # fmt: skip


@dataclass(frozen=True)
class JobHook:
    """A job's webhook options: extra `events` ("state", "progress") besides its terminal
    state, the base URL its links use, and how far its event log has been forwarded."""

    events: tuple[str, ...]
    base_url: str
    cursor: str


class DeliveryQueue:
    """Deliveries in Redis: their due times (ZSET `due`), one HASH each under `prefix`, and
    the given-up ones (ZSET `dead`). `claim` leases due ones to one sender (the score becomes
    the claim's deadline); `settle` records done / retry / dead, and only the claim's holder
    may. Job webhooks and alert notifications are both such queues."""

    def __init__(self, redis: aioredis.Redis, *, due: str, prefix: str, dead: str) -> None:
        self.redis = redis
        self._due, self._prefix, self._dead = due, prefix, dead
        self._claim: Script[ClaimArgs] = standalone(redis, "webhook_claim")
        self._settle: Script[SettleArgs] = standalone(redis, "webhook_settle")

    @guarded
    async def claim(
        self, now: int, *, lease_ms: int, limit: int, token: str | None = None
    ) -> list[Delivery]:
        """Lease up to `limit` due deliveries to this caller until now + `lease_ms`."""
        args = ClaimArgs(now, now + lease_ms, limit, self._prefix, token or uuid.uuid4().hex)
        out = []
        for flat in await self._claim([self._due], args):
            pairs = dict(zip(flat[::2], flat[1::2], strict=True))
            body = pairs.pop(b"body", None) or pairs.pop("body", b"")
            raw = fields_of(pairs)
            out.append(Delivery.of(raw, body if isinstance(body, bytes) else body.encode()))
        return out

    async def _settle_as(self, d: Delivery, mode: str, now: int, when: int, error: str) -> bool:
        keys = [self._due, self._prefix + d.id, self._dead]
        return int(await self._settle(keys, SettleArgs(d.claim, mode, now, when, error))) == 1

    @guarded
    async def done(self, d: Delivery, now: int) -> bool:
        """Delivered: forget it. False when the claim was no longer ours."""
        return await self._settle_as(d, "done", now, 0, "")

    @guarded
    async def retry(self, d: Delivery, now: int, *, at_ms: int, error: str) -> bool:
        """Failed; due again at `at_ms` (ms)."""
        return await self._settle_as(d, "retry", now, at_ms, error[:500])

    @guarded
    async def give_up(self, d: Delivery, now: int, *, error: str) -> bool:
        """Failed for the last time: kept in the dead set for DEAD_TTL_MS."""
        return await self._settle_as(d, "dead", now, DEAD_TTL_MS, error[:500])

    @guarded
    async def pending(self) -> int:
        """Deliveries waiting or being sent."""
        return int(await self.redis.zcard(self._due))


class WebhookStore(DeliveryQueue):
    def __init__(self, redis: aioredis.Redis, keys: Keys) -> None:
        super().__init__(
            redis, due=keys.webhook_due, prefix=keys.webhook_prefix(), dead=keys.webhook_dead
        )
        self.keys = keys
        self._collect: Script[CollectArgs] = standalone(redis, "webhook_collect")
        self._lease: Script[LeaseArgs] = standalone(redis, "webhook_lease")

    # -- jobs --------------------------------------------------------------------------

    @guarded
    async def set_fleet_wide(self) -> None:
        """Make `finish()` record every ended job, not only those with a URL of their own."""
        await self.redis.set(self.keys.webhook_fleet, "1")

    @guarded
    async def watch(self, job_id: str, *, events: Sequence[str], base_url: str, now: int) -> None:
        """Record a new job's webhook options; follow its log when it wants more than its end."""
        key = self.keys.webhook_job(job_id)
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.hset(key, mapping={"events": ",".join(events), "base_url": base_url,
                                    "cursor": "0"})  # fmt: skip
            pipe.pexpire(key, HOOK_TTL_MS)
            if events:
                pipe.zadd(self.keys.webhook_following, {job_id: now})
            await pipe.execute()

    @guarded
    async def hook(self, job_id: str) -> JobHook | None:
        raw = fields_of(await self.redis.hgetall(self.keys.webhook_job(job_id)))
        if not raw:
            return None
        events = tuple(e for e in raw.get("events", "").split(",") if e)
        return JobHook(events, raw.get("base_url", ""), raw.get("cursor", "0"))

    @guarded
    async def ended(self, limit: int) -> list[str]:
        """Ids of ended jobs whose terminal webhooks are not queued yet, oldest first."""
        members: Any = await self.redis.zrange(self.keys.webhook_ended, 0, limit - 1)
        return [text(m) for m in members]

    @guarded
    async def collect(self, job_id: str, deliveries: Iterable[NewDelivery], now: int) -> int:
        """Take `job_id` out of `ended` and queue `deliveries`, atomically; 0 (and nothing
        queued) when another replica did it first. Empty `deliveries`: just take it out."""
        return await self._add(job_id, deliveries, now, guard=True)

    @guarded
    async def add(self, job_id: str, deliveries: Iterable[NewDelivery], now: int) -> int:
        """Queue deliveries about a running job (progress, state)."""
        return await self._add(job_id, deliveries, now, guard=False)

    async def _add(
        self, job_id: str, deliveries: Iterable[NewDelivery], now: int, *, guard: bool
    ) -> int:
        rows: list[dict[str, str | int]] = [
            {"id": d.id, "url": d.url, "event": d.event, "body": d.body.decode(),
             "max_attempts": d.max_attempts}
            for d in (d.with_id() for d in deliveries)
        ]  # fmt: skip
        args = CollectArgs(now, job_id, guard, self.keys.webhook_prefix(), rows)
        keys = [self.keys.webhook_ended, self.keys.webhook_due]
        return int(await self._collect(keys, args))

    # -- following running jobs --------------------------------------------------------

    @guarded
    async def lease_following(self, now: int, lease_ms: int, limit: int) -> list[str]:
        keys = [self.keys.webhook_following]
        return [text(m) for m in await self._lease(keys, LeaseArgs(now, now + lease_ms, limit))]

    @guarded
    async def followed(self, job_id: str, *, cursor: str, next_ms: int | None) -> None:
        """Store how far `job_id`'s log was forwarded; look again at `next_ms` (ms), or
        never (None: the job ended or is gone)."""
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.hset(self.keys.webhook_job(job_id), "cursor", cursor)
            if next_ms is None:
                pipe.zrem(self.keys.webhook_following, job_id)
            else:
                pipe.zadd(self.keys.webhook_following, {job_id: next_ms})
            await pipe.execute()

    # -- deliveries (claim, settle, pending: DeliveryQueue) ------------------------------

    @guarded
    async def dead(self, limit: int = 100) -> list[dict[str, str]]:
        """The most recently given-up deliveries (without their bodies), newest first."""
        members: Any = await self.redis.zrevrange(self.keys.webhook_dead, 0, limit - 1)
        ids = [text(m) for m in members]
        async with self.redis.pipeline(transaction=False) as pipe:
            for delivery_id in ids:
                pipe.hmget(self.keys.webhook(delivery_id),
                           ["id", "job_id", "url", "event", "attempts", "last_error"])  # fmt: skip
            rows = await pipe.execute()
        names = ("id", "job_id", "url", "event", "attempts", "last_error")
        return [
            {n: text(v) for n, v in zip(names, row, strict=True) if v is not None}
            for row in rows
            if row[0] is not None
        ]
