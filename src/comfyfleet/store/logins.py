"""Failed logins, counted per source address in Redis, so the backoff holds across every
balancer replica and node.

The first `FREE_FAILURES` wrong credentials from a source cost nothing (typos, a rotated
password). Each one after that makes the source wait before its next credentials are even
looked at: `FIRST_WAIT_MS`, doubling per failure, at most `LONGEST_WAIT_MS`. The record
lives `WINDOW_MS` after the last failure and a correct login clears it. It is per source:
a correct login from another address is never slowed. Bounded: one small HASH per failing
source, each with a TTL. An IPv6 source counts as its /64 (one host's usual allotment).
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

import redis.asyncio as aioredis

from comfyfleet.store.keys import Keys
from comfyfleet.store.scripts import Script, guarded, standalone

FREE_FAILURES = 10
FIRST_WAIT_MS = 1_000
LONGEST_WAIT_MS = 60_000
WINDOW_MS = 15 * 60_000


@dataclass(frozen=True)
class FailedArgs:
    """login_failed.lua's arguments (times in ms)."""

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

    @guarded
    async def wait_ms(self, source: str) -> tuple[int, int]:
        """(ms the source must still wait, failures on record)."""
        left, count = await self._wait([self.keys.login_failures(source)], WaitArgs())
        return int(left), int(count)

    @guarded
    async def failed(self, source: str) -> int:
        """Record a failure; returns the wait it now imposes (ms)."""
        return int(await self._failed([self.keys.login_failures(source)], FailedArgs()))

    @guarded
    async def succeeded(self, source: str) -> None:
        await self.redis.delete(self.keys.login_failures(source))
