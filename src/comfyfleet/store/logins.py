"""Failed logins, counted per source address in Redis, so the backoff holds across every
balancer replica and node.

The first `FREE_FAILURES` wrong credentials from a source cost nothing (typos, a rotated
password). Each one after that makes the source wait before its next credentials are even
looked at: `FIRST_WAIT_MS`, doubling per failure, at most `LONGEST_WAIT_MS`. The record
lives `WINDOW_MS` after the last failure and a correct login clears it. It is per source:
a correct login from another address is never slowed. Bounded: one small HASH per failing
source, each with a TTL. An IPv6 source counts as its /64 (one host's usual allotment).

Every request with credentials asks first whether its source must wait; asking Redis each
time was a round trip per request (a tenth of the balancer's CPU under submit load). So a
process remembers the sources it found without any failure on record and trusts that while
its subscription to the failure channel is active: every failure, in any process, is
published there (login_failed.lua) and empties what every process remembers, as does a lost
subscription. A check whose answer raced a failure is not remembered.
"""

from __future__ import annotations

import asyncio
import ipaddress
from dataclasses import dataclass

import redis.asyncio as aioredis

from comfyfleet.store.events import Subscription
from comfyfleet.store.keys import Keys
from comfyfleet.store.scripts import Script, guarded, standalone
from comfyfleet.tasks import stop

FREE_FAILURES = 10
FIRST_WAIT_MS = 1_000
LONGEST_WAIT_MS = 60_000
WINDOW_MS = 15 * 60_000
# Most sources one process remembers as clean; past it, it forgets them all and asks again.
CLEAN_SOURCES = 10_000


@dataclass(frozen=True)
class FailedArgs:
    """login_failed.lua's arguments (times in ms); `channel` is where `source` is published."""

    source: str
    channel: str
    free_failures: int = FREE_FAILURES
    first_wait_ms: int = FIRST_WAIT_MS
    longest_wait_ms: int = LONGEST_WAIT_MS
    window_ms: int = WINDOW_MS


@dataclass(frozen=True)
class WaitArgs:
    """login_wait.lua takes no arguments beyond its key."""


def source_of(remote: str | None) -> str:
    """The address failures are counted against: the IP, or an IPv6 address's /64."""
    try:
        address = ipaddress.ip_address((remote or "").split("%")[0])
    except ValueError:
        return "unknown"
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is None:
        return str(ipaddress.IPv6Network(f"{address}/64", strict=False))
    return str(address.ipv4_mapped if isinstance(address, ipaddress.IPv6Address) else address)


class LoginThrottle:
    """See the module docstring. Times in ms."""

    def __init__(self, redis: aioredis.Redis, keys: Keys) -> None:
        self.redis = redis
        self.keys = keys
        self._failed: Script[FailedArgs] = standalone(redis, "login_failed")
        self._wait: Script[WaitArgs] = standalone(redis, "login_wait")
        # Sources found clean, trusted while `_live` (see the module docstring); `_epoch`
        # counts what empties them, so a check that raced one is not remembered.
        self._clean: set[str] = set()
        self._epoch = 0
        self._live = asyncio.Event()
        self._subscription = Subscription(redis, keys.login_failed_channel,
                                          self._forget, self._subscribed, self._lost)  # fmt: skip
        self._task: asyncio.Task[None] | None = None

    def _forget(self, _source: str = "") -> None:
        self._clean.clear()
        self._epoch += 1

    def _subscribed(self, _again: bool) -> None:
        self._forget()
        self._live.set()

    def _lost(self) -> None:
        self._live.clear()
        self._forget()

    def _follow(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._subscription.run(), name="login-failures")

    async def listening(self) -> bool:
        """Start following the failure channel (if not yet); True once that is active."""
        self._follow()
        await asyncio.sleep(0)
        return self._live.is_set()

    @guarded
    async def wait_ms(self, source: str) -> tuple[int, int]:
        """(ms the source must still wait, failures on record)."""
        self._follow()
        if self._live.is_set() and source in self._clean:
            return 0, 0
        epoch = self._epoch
        left, count = await self._wait([self.keys.login_failures(source)], WaitArgs())
        if self._live.is_set() and epoch == self._epoch and int(left) == int(count) == 0:
            if len(self._clean) >= CLEAN_SOURCES:
                self._clean.clear()
            self._clean.add(source)
        return int(left), int(count)

    @guarded
    async def failed(self, source: str) -> int:
        """Record a failure; returns the wait it now imposes (ms)."""
        args = FailedArgs(source=source, channel=self.keys.login_failed_channel)
        return int(await self._failed([self.keys.login_failures(source)], args))

    @guarded
    async def succeeded(self, source: str) -> None:
        await self.redis.delete(self.keys.login_failures(source))

    async def close(self) -> None:
        """Stop following the failure channel."""
        await stop(self._task)
        self._task = None
        self._lost()
