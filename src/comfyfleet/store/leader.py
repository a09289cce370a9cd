"""A leadership lease: one of N processes runs a singleton (the alert evaluator, say).

The lease is one key, `{ns}:leader:<name>`, holding the holder's token `<epoch>:<holder>`
with a Redis expiry (PX), so it lapses on Redis's clock when its holder dies or is cut
off. `epoch` comes from `{ns}:leader:<name>:epoch`, incremented on every acquisition: a
token is never reused, so a holder that lost the lease and came back cannot pass for the
new one.

- `LeaderLease.acquire` takes the lease when it is free; `renew` extends it (and `release`
  gives it up) only while the caller's token is the one stored.
- `Leadership` is the loop around it: try every ttl/3; while holding, renew every ttl/3
  and run the singleton's `work(lease)`; stop the work when a renewal is refused, or when
  Redis has not confirmed the lease for half of it (the lease may be about to lapse
  unseen), and release on the way out.
- Writes the singleton must not make after a takeover go through a `FencedScript`: the
  script checks the caller's token in the same atomic step as the write, so a holder that
  stalled past its lease (GC pause, partition) cannot overwrite its successor's work.

Times in ms unless named `_s`.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import dataclass
from typing import Any, Generic

import orjson
import redis.asyncio as aioredis
import structlog
from redis.exceptions import RedisError, ResponseError

from comfyfleet.errors import Conflict
from comfyfleet.store.keys import Keys
from comfyfleet.store.scripts import Args, Script, read_lua, standalone, text
from comfyfleet.tasks import stop

log = structlog.get_logger(__name__)


class NotLeader(Conflict):
    """A fenced write by a caller whose leadership lease has lapsed."""

    code = "not-leader"
    title = "Not the leader"


@dataclass(frozen=True)
class AcquireArgs:
    holder: str
    ttl_ms: int


@dataclass(frozen=True)
class RenewArgs:
    token: str
    ttl_ms: int  # 0 releases the lease


@dataclass(frozen=True)
class Lease:
    """A held lease: `token` is what fenced scripts check; `epoch` grows with every
    acquisition of this lease by anyone."""

    name: str
    token: str

    @property
    def epoch(self) -> int:
        return int(self.token.split(":", 1)[0])


class LeaderLease:
    """The lease `name` as seen by one contender, `holder` (unique per process life)."""

    def __init__(
        self, redis: aioredis.Redis, keys: Keys, name: str, *, ttl_ms: int, holder: str = ""
    ) -> None:
        if ttl_ms < 30:
            raise ValueError("a leadership lease needs at least 30 ms")
        self.redis, self.keys, self.name, self.ttl_ms = redis, keys, name, ttl_ms
        self.holder = holder or uuid.uuid4().hex
        self._acquire: Script[AcquireArgs] = standalone(redis, "leader_acquire")
        self._renew: Script[RenewArgs] = standalone(redis, "leader_renew")

    @property
    def key(self) -> str:
        return self.keys.leader(self.name)

    async def acquire(self) -> Lease | None:
        """The lease if this holder has it now (newly or already), else None."""
        keys = [self.key, self.keys.leader_epoch(self.name)]
        reply = await self._acquire(keys, AcquireArgs(self.holder, self.ttl_ms))
        return Lease(self.name, text(reply)) if reply else None

    async def renew(self, lease: Lease) -> bool:
        """Extend the lease by its ttl; False when it is no longer ours."""
        return int(await self._renew([self.key], RenewArgs(lease.token, self.ttl_ms))) == 1

    async def release(self, lease: Lease) -> bool:
        """Give the lease up at once (a successor need not wait for it to lapse)."""
        return int(await self._renew([self.key], RenewArgs(lease.token, 0))) == 1

    async def holder_of(self) -> str | None:
        """Who holds the lease now (its holder id), or None."""
        token = await self.redis.get(self.key)
        return text(token).split(":", 1)[1] if token else None


class FencedScript(Generic[Args]):
    """A Lua script that runs only for the current leader: `_fence.lua` checks the token
    (KEYS[1], ARGV[1]) first, so the script's own KEYS start at index 2; its named
    arguments `Args` (a frozen dataclass) are `A`, as in every script (store/scripts.py)."""

    def __init__(self, redis: aioredis.Redis, source: str) -> None:
        self._script = redis.register_script(read_lua("_fence") + "\n" + source)

    async def __call__(self, lease: Lease, leader_key: str, keys: Sequence[str], args: Args) -> Any:
        """Run it; NotLeader when `lease` is no longer the one held."""
        try:
            argv: list[str | bytes] = [lease.token, orjson.dumps(args)]
            return await self._script(keys=[leader_key, *keys], args=argv)
        except ResponseError as exc:
            if str(exc).startswith("NOTLEADER"):
                raise NotLeader(f"lease {lease.name!r} token {lease.token} lapsed") from exc
            raise


Work = Callable[[Lease], Coroutine[Any, Any, None]]


async def _stop_fully(task: asyncio.Task[None]) -> None:
    """Stop the work before going on, even when this loop is cancelled again meanwhile
    (`tasks.stop` repeats its cancels): an abandoned stop could leave the work running
    without its lease. A cancel that came in is raised once the work has ended."""
    stopping = asyncio.ensure_future(stop(task))
    cancelled = False
    while not stopping.done():
        try:
            await asyncio.shield(stopping)
        except asyncio.CancelledError:
            cancelled = True
    if cancelled:
        raise asyncio.CancelledError


class Leadership:
    """Hold `lease` whenever possible and run `work(lease)` while holding it.

    `work` is cancelled as soon as this process cannot be sure it still leads; it then
    starts again (with a new lease) when this process next wins the lease. `held` is the
    lease while the work runs."""

    def __init__(self, lease: LeaderLease, work: Work) -> None:
        self.lease = lease
        self.work = work
        self.held: Lease | None = None
        self.period_s = lease.ttl_ms / 3000
        # Stop leading when Redis has not confirmed the lease for this long (s): half a
        # lease, so the work stops well before another process can have taken over.
        self.doubt_s = lease.ttl_ms / 2000

    async def run(self) -> None:
        """Contend forever (until cancelled)."""
        loop = asyncio.get_running_loop()
        while True:
            try:
                lease = await self.lease.acquire()
            except RedisError as exc:
                log.warning("leader_acquire_failed", lease=self.lease.name, error=str(exc))
                lease = None
            if lease is None:
                await asyncio.sleep(self.period_s)
                continue
            log.info("leader_acquired", lease=self.lease.name, token=lease.token)
            self.held = lease
            task = loop.create_task(self.work(lease), name=f"leader:{self.lease.name}")
            try:
                await self._hold(lease, task)
            finally:
                self.held = None
                await _stop_fully(task)
                await asyncio.shield(self._release(lease))
            if task.done() and not task.cancelled():
                await asyncio.sleep(self.period_s)  # the work failed: no hot loop of retries

    async def _hold(self, lease: Lease, task: asyncio.Task[None]) -> None:
        """Renew every ttl/3 until the lease is refused, unconfirmed for too long, or the
        work ends by itself (`stop` logs its error)."""
        loop = asyncio.get_running_loop()
        confirmed = loop.time()
        while True:
            done, _ = await asyncio.wait({task}, timeout=self.period_s)
            if done:
                return
            try:
                async with asyncio.timeout(self.period_s):
                    renewed = await self.lease.renew(lease)
            except (RedisError, TimeoutError) as exc:
                if loop.time() - confirmed > self.doubt_s:
                    log.warning("leader_unconfirmed", lease=lease.name, error=repr(exc))
                    return
                continue
            if not renewed:
                log.warning("leader_lost", lease=lease.name, token=lease.token)
                return
            confirmed = loop.time()

    async def _release(self, lease: Lease) -> None:
        try:
            await self.lease.release(lease)
            log.info("leader_released", lease=lease.name, token=lease.token)
        except RedisError as exc:  # it lapses by itself
            log.warning("leader_release_failed", lease=lease.name, error=str(exc))
