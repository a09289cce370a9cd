"""Per-job event logs (Redis streams) and the wake-up hint listener (pub/sub).

An event is a stream entry with two fields: `type` (e.g. "state", "lease",
"cancel_requested", "progress") and `data`, a JSON object. Readers get it back flattened as
`{"type": ..., **data}` beside its stream id, which is the replay cursor (`Last-Event-ID`).
The log is the record; pub/sub only wakes idle readers early and may lose messages.

A queued job has no stream yet (an empty one costs ~4.8 KB of Redis): the job's first event
after `queued` opens it, writing the deferred `queued` event first with the id
`<created_ms>-0` (open_log in lua/_lib.lua). Until then `read` from the start shows that
same event, built from the job's hash, so readers see one log before and after.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any

import orjson
import redis.asyncio as aioredis
import structlog
from redis.exceptions import RedisError

from comfyfleet.errors import NotFound
from comfyfleet.models.retry import Backoff
from comfyfleet.store.connect import SOCKET_TIMEOUT_S
from comfyfleet.store.keys import Keys
from comfyfleet.store.scripts import text
from comfyfleet.tasks import Pacer, stop

log = structlog.get_logger(__name__)

# A blocking XREAD is cut into slices shorter than the socket timeout (ms), so a long wait
# is never mistaken for a dead connection.
BLOCK_SLICE_MS = int(SOCKET_TIMEOUT_S * 1000) // 2
# How far back `last` looks for an event of one type (entries).
LAST_EVENT_SCAN = 50
# How long one pub/sub read waits before looping (s): bounds how late a close is noticed,
# not how late a message is seen (a message wakes the read at once).
PUBSUB_READ_S = 1.0
# Cursors that mean "from the start of the log".
LOG_START = frozenset({"0", "0-0"})
RESUBSCRIBE_BACKOFF = Backoff(base_ms=50, cap_ms=2_000, jitter=False)


def decode_event(fields: Mapping[Any, Any] | None) -> dict[str, Any]:
    """A stream entry's fields as one flat event dict (`type` wins over a data key)."""
    raw = {text(k): text(v) for k, v in (fields or {}).items()}
    data = orjson.loads(raw["data"]) if raw.get("data") else {}
    return {**data, "type": raw.get("type", "")}


class EventLog:
    """Append to and read the capped, replayable event stream of each job."""

    def __init__(self, redis: aioredis.Redis, keys: Keys, *, maxlen: int) -> None:
        self.redis = redis
        self.keys = keys
        self.maxlen = maxlen

    async def append(self, job_id: str, kind: str, data: Mapping[str, Any]) -> str:
        """Append one event; returns its stream id. NotFound once the job's log is gone
        (never created, or expired with the finished job) -- it is not recreated."""
        entry_id = await self.redis.xadd(
            self.keys.events(job_id),
            {"type": kind, "data": orjson.dumps(dict(data))},
            maxlen=self.maxlen,
            approximate=True,
            nomkstream=True,
        )
        if entry_id is None:
            raise NotFound(f"no event log for job {job_id!r}", job_id=job_id)
        return text(entry_id)

    async def append_many(
        self, job_id: str, events: Sequence[tuple[str, Mapping[str, Any]]]
    ) -> None:
        """Append `events` (kind, data) in order, in one round trip. Entries after the log
        is gone are dropped, as `append` refuses them (NOMKSTREAM)."""
        key = self.keys.events(job_id)
        async with self.redis.pipeline(transaction=False) as pipe:
            for kind, data in events:
                pipe.xadd(key, {"type": kind, "data": orjson.dumps(dict(data))},
                          maxlen=self.maxlen, approximate=True, nomkstream=True)  # fmt: skip
            await pipe.execute()

    async def read(
        self, job_id: str, *, after: str, count: int, block_ms: int | None
    ) -> list[tuple[str, dict[str, Any]]]:
        """Up to `count` events after stream id `after` ("0": from the start), oldest first.
        With `block_ms` (ms), wait that long for a first event when none is there yet;
        None or 0: return at once."""
        key = self.keys.events(job_id)
        if after in LOG_START:
            deferred = await self._deferred_queued(job_id)
            if deferred is not None:
                return [deferred]
        if not block_ms:
            return self.entries(await self.redis.xread({key: after}, count=count))
        loop = asyncio.get_running_loop()
        deadline = loop.time() + block_ms / 1000
        while True:
            left_ms = int((deadline - loop.time()) * 1000)
            if left_ms <= 0:
                return []
            reply = await self.redis.xread(
                {key: after}, count=count, block=min(left_ms, BLOCK_SLICE_MS)
            )
            if reply:
                return self.entries(reply)

    async def _deferred_queued(self, job_id: str) -> tuple[str, dict[str, Any]] | None:
        """The `queued` event of a job whose log is not opened yet, as the log will hold it
        (enqueue defers it: see open_log in lua/_lib.lua); None once the log exists, or
        for an unknown job."""
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.exists(self.keys.events(job_id))
            pipe.hmget(self.keys.job(job_id), "created_ms", "pool", "priority", "seq")
            exists, fields = await pipe.execute()
        if exists or fields[0] is None:
            return None
        created, pool, priority, seq = (text(value) for value in fields)
        event = {"status": "queued", "pool": pool, "priority": int(priority), "seq": int(seq),
                 "at_ms": int(created), "type": "state"}  # fmt: skip
        return f"{created}-0", event

    async def last(self, job_id: str, kind: str) -> dict[str, Any] | None:
        """The newest event of type `kind` among the last LAST_EVENT_SCAN events, or None."""
        entries = await self.redis.xrevrange(self.keys.events(job_id), count=LAST_EVENT_SCAN)
        for _entry_id, fields in entries or []:
            event = decode_event(fields)
            if event["type"] == kind:
                return event
        return None

    @staticmethod
    def entries(reply: Any) -> list[tuple[str, dict[str, Any]]]:
        if not reply:
            return []
        _stream, entries = reply[0]
        return [(text(entry_id), decode_event(fields)) for entry_id, fields in entries]


class Subscription:
    """One pub/sub channel, followed for as long as `run` runs: each message's data goes
    to `on_message`; `on_subscribed(again)` is called each time the subscription becomes
    active (`again`: after a loss, when messages may have been missed), `on_lost` each
    time it is lost; it is then made again with backoff. Pub/sub is a hint: callers keep
    a fallback."""

    def __init__(
        self,
        redis: aioredis.Redis,
        channel: str,
        on_message: Callable[[str], None],
        on_subscribed: Callable[[bool], None] = lambda again: None,
        on_lost: Callable[[], None] = lambda: None,
    ) -> None:
        self.redis = redis
        self.channel = channel
        self.on_message = on_message
        self.on_subscribed = on_subscribed
        self.on_lost = on_lost

    async def run(self) -> None:
        pacer, again = Pacer(RESUBSCRIBE_BACKOFF), False
        while True:
            pubsub = self.redis.pubsub()
            try:
                await pubsub.subscribe(self.channel)
                while True:
                    msg = await pubsub.get_message(timeout=PUBSUB_READ_S)
                    if msg is None:
                        continue
                    if msg["type"] == "subscribe":
                        pacer.reset()
                        self.on_subscribed(again)
                        again = True
                    elif msg["type"] == "message":
                        self.on_message(text(msg["data"]))
            except (RedisError, OSError) as exc:
                self.on_lost()
                log.warning(
                    "subscription_lost", channel=self.channel, error=repr(exc),
                    retry_in_s=pacer.delay_s,
                )  # fmt: skip
                await pacer.sleep()
            finally:
                # PubSub.aclose is untyped in redis-py; give it its (known) type.
                close: Callable[[], Awaitable[None]] = pubsub.aclose
                with contextlib.suppress(RedisError, OSError):
                    await close()


class WakeListener:
    """Keeps one pub/sub subscription to the wake channel and remembers that a hint came.

    The flag survives between waits, so a hint that lands while the caller is busy claiming
    still cuts its next wait short (at worst one extra, empty claim). A lost subscription is
    re-made with backoff; the waits in between fall back to their timeouts.
    """

    def __init__(self, redis: aioredis.Redis, channel: str) -> None:
        self.channel = channel
        self._hint = asyncio.Event()
        self._subscribed = asyncio.Event()
        self._subscription = Subscription(
            redis, channel, lambda _data: self._hint.set(), self._on_subscribed,
            self._subscribed.clear,
        )  # fmt: skip
        self._task: asyncio.Task[None] | None = None

    def _on_subscribed(self, again: bool) -> None:
        self._subscribed.set()
        if again:
            # Hints may have been lost while we were away: look once.
            self._hint.set()

    async def start(self, timeout_s: float | None = None) -> bool:
        """Subscribe (once) and wait up to `timeout_s` (s; None: no limit) until the
        subscription is active. True when it is."""
        if self._task is None:
            self._task = asyncio.create_task(self._subscription.run(), name=f"wake:{self.channel}")
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._subscribed.wait(), timeout_s)
        return self._subscribed.is_set()

    async def wait(self, timeout_s: float) -> bool:
        """True as soon as a hint has arrived (now or since the last wait); False after
        `timeout_s` (s) without one."""
        if self._hint.is_set():
            self._hint.clear()
            return True
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        await self.start(timeout_s)
        try:
            await asyncio.wait_for(self._hint.wait(), max(0.0, deadline - loop.time()))
        except TimeoutError:
            return False
        self._hint.clear()
        return True

    async def close(self) -> None:
        await stop(self._task)
        self._task = None
