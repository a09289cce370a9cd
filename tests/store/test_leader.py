"""The leadership lease on the suite's real Redis: one holder at a time, hand-over when the
holder stops or dies (a real process SIGKILLed), fenced writes refused after a takeover."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import textwrap
from collections.abc import AsyncIterator
from dataclasses import dataclass

import pytest
import redis.asyncio as aioredis

from comfyfleet.config import RedisConfig
from comfyfleet.store.keys import Keys
from comfyfleet.store.leader import FencedScript, LeaderLease, Leadership, Lease, NotLeader
from comfyfleet.tasks import stop
from tests.support.waiting import until

TTL_MS = 600

# A fenced write: append the writer's token to a list (KEYS[2]).
APPEND = "redis.call('RPUSH', KEYS[2], A.item) return 1"


@dataclass(frozen=True)
class AppendArgs:
    item: str


@pytest.fixture
async def client(redis_config: RedisConfig) -> AsyncIterator[aioredis.Redis]:
    redis = aioredis.Redis.from_url(redis_config.url)
    yield redis
    await redis.aclose()


def contender(client: aioredis.Redis, ns: str, holder: str, ttl_ms: int = TTL_MS) -> LeaderLease:
    return LeaderLease(client, Keys(ns), "singleton", ttl_ms=ttl_ms, holder=holder)


async def test_one_holder_at_a_time_and_release_hands_over(
    client: aioredis.Redis, redis_config: RedisConfig
) -> None:
    a = contender(client, redis_config.namespace, "a")
    b = contender(client, redis_config.namespace, "b")
    lease_a = await a.acquire()
    assert lease_a is not None
    assert lease_a.epoch == 1
    assert await b.acquire() is None
    assert await a.acquire() == lease_a  # a retried acquire by the holder gets its lease back
    assert await b.holder_of() == "a"
    assert await a.renew(lease_a)
    assert await a.release(lease_a)
    lease_b = await b.acquire()
    assert lease_b is not None
    assert lease_b.epoch == 2
    assert not await a.renew(lease_a)  # a's old token renews nothing
    assert not await a.release(lease_a)
    assert await b.holder_of() == "b"


async def test_lapsed_lease_goes_to_the_other_and_fences_the_old_holder(
    client: aioredis.Redis, redis_config: RedisConfig
) -> None:
    keys = Keys(redis_config.namespace)
    a = contender(client, redis_config.namespace, "a", ttl_ms=50)
    b = contender(client, redis_config.namespace, "b", ttl_ms=50)
    lease_a = await a.acquire()
    assert lease_a is not None
    write: FencedScript[AppendArgs] = FencedScript(client, APPEND)
    log_key = keys.prefix + ":test:log"
    assert await write(lease_a, a.key, [log_key], AppendArgs("a")) == 1
    lease_b = await until(b.acquire, lambda lease: lease is not None, what="a's lease to lapse")
    assert lease_b is not None
    assert lease_b.epoch > lease_a.epoch
    with pytest.raises(NotLeader):
        await write(lease_a, a.key, [log_key], AppendArgs("a-late"))
    assert await write(lease_b, b.key, [log_key], AppendArgs("b")) == 1
    assert await client.lrange(log_key, 0, -1) == [b"a", b"b"]


async def test_leadership_runs_the_work_once_and_hands_over_on_stop(
    client: aioredis.Redis, redis_config: RedisConfig
) -> None:
    running: list[str] = []
    overlaps: list[list[str]] = []

    def work_of(name: str):  # type: ignore[no-untyped-def]
        async def work(lease: Lease) -> None:
            running.append(name)
            if len(running) > 1:
                overlaps.append(list(running))
            try:
                await asyncio.Event().wait()
            finally:
                running.remove(name)

        return work

    ns = redis_config.namespace
    first = Leadership(contender(client, ns, "a"), work_of("a"))
    second = Leadership(contender(client, ns, "b"), work_of("b"))
    task_a = asyncio.create_task(first.run())
    await until(lambda: _value(running), lambda r: r == ["a"], what="a to lead")
    task_b = asyncio.create_task(second.run())
    # b contends for several of its periods and never runs the work meanwhile
    for _ in range(3):
        await asyncio.wait({task_b}, timeout=second.period_s)
        assert running == ["a"]
        assert second.held is None
    await stop(task_a)  # a stops: it releases, b takes over within one of its periods
    await until(lambda: _value(running), lambda r: r == ["b"], what="b to take over")
    assert second.held is not None
    assert second.held.epoch == 2
    await stop(task_b)
    assert running == []
    assert overlaps == []
    assert await client.exists(Keys(ns).leader("singleton")) == 0


async def test_leadership_stops_the_work_when_the_lease_is_taken_away(
    client: aioredis.Redis, redis_config: RedisConfig
) -> None:
    """A renewal refused (the lease lapsed during a stall and someone else took it) ends
    the work at once."""
    ns = redis_config.namespace
    stopped = asyncio.Event()

    async def work(lease: Lease) -> None:
        try:
            await asyncio.Event().wait()
        finally:
            stopped.set()

    leader = Leadership(contender(client, ns, "a"), work)
    task = asyncio.create_task(leader.run())
    await until(lambda: _value(leader.held), lambda held: held is not None, what="a to lead")
    await client.set(Keys(ns).leader("singleton"), "99:intruder", px=60_000)
    await asyncio.wait_for(stopped.wait(), timeout=10)
    assert leader.held is None
    await stop(task)
    assert await client.get(Keys(ns).leader("singleton")) == b"99:intruder"


HOLDER = textwrap.dedent(
    """
    import asyncio, sys
    import redis.asyncio as aioredis
    from comfyfleet.store.keys import Keys
    from comfyfleet.store.leader import LeaderLease, Leadership

    async def main() -> None:
        client = aioredis.Redis.from_url(sys.argv[1])
        async def work(lease):
            print("leading", lease.token, flush=True)
            await asyncio.Event().wait()
        lease = LeaderLease(client, Keys(sys.argv[2]), "singleton", ttl_ms=int(sys.argv[3]),
                            holder="proc")
        await Leadership(lease, work).run()

    asyncio.run(main())
    """
)


async def test_a_killed_holder_hands_over_after_its_lease_lapses(
    client: aioredis.Redis, redis_config: RedisConfig
) -> None:
    ns = redis_config.namespace
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-c", HOLDER, redis_config.url, ns, str(TTL_MS),
        stdout=asyncio.subprocess.PIPE, env={**os.environ},
    )  # fmt: skip
    try:
        assert proc.stdout is not None
        line = b""
        while not line.startswith(b"leading"):  # structlog's own lines come first
            line = await asyncio.wait_for(proc.stdout.readline(), timeout=30)
            assert line, "the holder process exited"
        assert line.strip() == b"leading 1:proc"
        mine = contender(client, ns, "survivor")
        assert await mine.acquire() is None  # the process holds it and renews
        proc.send_signal(signal.SIGKILL)
        await proc.wait()
        lease = await until(mine.acquire, lambda lease: lease is not None, what="takeover")
        assert lease is not None
        assert lease.token == "2:survivor"
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


async def _value(x: object) -> object:
    """Turn a value or a coroutine function into something `until` can poll."""
    return await x() if callable(x) else x  # type: ignore[operator]
