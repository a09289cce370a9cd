"""Make the Redis client every role uses, from a RedisConfig.

Connections come from a bounded, blocking pool: at most `pool_size` per client, and a
command that finds them all busy waits up to `pool_timeout_s` for one instead of failing at
once (redis-py's default pool raises "Too many connections" the moment its cap is hit, which
turned a burst of submits into 503s against a healthy Redis). Past that wait the command
raises `ConnectionError("No connection available.")`, which the roles treat as Redis being
unavailable (the balancer answers 503 with Retry-After).

Connections that hold on: a pub/sub subscription keeps one connection of its client's pool
for its lifetime (a node has two: wake-ups and cancels), and each blocking XREAD holds one
while it blocks, so the balancer gives waiting requests a client of their own
(`balancer/events_api.py`), bounded by its own semaphore.

Connection errors and timeouts are retried with jittered exponential backoff, and idle
connections are pinged before reuse, so a restarting server or a dropped socket costs a
short delay instead of an error. Blocking reads (XREAD BLOCK, pub/sub) are issued in slices
shorter than the socket timeout by their callers.
"""

from __future__ import annotations

import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialWithJitterBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from comfyfleet.config import RedisConfig

CONNECT_TIMEOUT_S = 5.0
# Longest a reply may take; blocking commands block for less than this (see events.py).
SOCKET_TIMEOUT_S = 10.0
# Ping a connection idle this long before using it again (s).
HEALTH_CHECK_INTERVAL_S = 15
RETRIES = 5
BACKOFF_BASE_S = 0.05
BACKOFF_CAP_S = 2.0


def connect(cfg: RedisConfig, *, pool_size: int | None = None) -> aioredis.Redis:
    """A client for `cfg.url` with a pool of `pool_size` connections (None: the config's
    `pool_size`); connections open lazily, so this never blocks.

    A retried command may run twice when a reply was lost after the server ran it; the job
    scripts tolerate that (at-least-once: a job claimed twice by the same call is reaped and
    requeued when its lease expires).
    """
    pool = aioredis.BlockingConnectionPool.from_url(
        cfg.url,
        max_connections=pool_size or cfg.pool_size,
        timeout=cfg.pool_timeout_s,
        socket_connect_timeout=CONNECT_TIMEOUT_S,
        socket_timeout=SOCKET_TIMEOUT_S,
        socket_keepalive=True,
        health_check_interval=HEALTH_CHECK_INTERVAL_S,
        retry=Retry(
            ExponentialWithJitterBackoff(cap=BACKOFF_CAP_S, base=BACKOFF_BASE_S),
            RETRIES,
        ),
        retry_on_error=[RedisConnectionError, RedisTimeoutError],
    )
    # The client owns the pool: closing the client closes its connections.
    return aioredis.Redis.from_pool(pool)
