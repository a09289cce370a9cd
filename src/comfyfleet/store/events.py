"""Per-job event logs (Redis streams) and the wake-up hint listener (pub/sub).

An event is a stream entry with two fields: `type` (e.g. "state", "lease",
"cancel_requested", "progress") and `data`, a JSON object. Readers get it back flattened as
`{"type": ..., **data}` beside its stream id, which is the replay cursor (`Last-Event-ID`).
The log is the record; pub/sub only wakes idle readers early and may lose messages.

A queued job has no stream yet (an empty one costs ~4.8 KB of Redis): the job's first event
after `queued` opens it, writing the deferred `queued` event first with the id
`<created_ms>-0` (open_log in lua/_lib.lua). Until then `read` from the start shows that
same event, built from the job's hash, so readers see one log before and after.

A finished job keeps no stream either: the script that ends it folds the log into the job
hash (field FOLDED_LOG, fold_log in lua/_lib.lua) and lets the stream expire after a grace
(RedisConfig.events_grace_ms, a minute: the time live followers have to read the end, and
the native /ws replays an ended prompt), so that readers blocked on the stream are woken
by the end rather than stranded on a deleted key. Readers read the stream while it exists
and the folded log once it is gone: the same ids, the same events, less the kinds only live
followers use (docs/design.md "State in Redis"), with the deferred `queued` event rebuilt from
the hash and the terminal event's `outputs` from the hash's. A cursor (Last-Event-ID) taken
from either resumes in the other.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any

import orjson
import redis.asyncio as aioredis
import structlog
from redis.asyncio.client import Pipeline
from redis.exceptions import RedisError

from comfyfleet.errors import NotFound
from comfyfleet.models.job import FOLDED_LOG, JobStatus, outputs_with_keys
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
# The job hash fields a read looks at beside the stream: the deferred `queued` event's and
# the folded log.
_LOG_FIELDS = ("created_ms", "pool", "priority", "seq", FOLDED_LOG)

Entry = tuple[str, dict[str, Any]]


def decode_event(fields: Mapping[Any, Any] | None) -> dict[str, Any]:
    """A stream entry's fields as one flat event dict (`type` wins over a data key)."""
    raw = {text(k): text(v) for k, v in (fields or {}).items()}
    data = orjson.loads(raw["data"]) if raw.get("data") else {}
    return {**data, "type": raw.get("type", "")}


def stream_id(entry_id: str) -> tuple[int, int]:
    """A stream id ("ms-seq", or "ms") as a pair that orders like Redis orders them."""
    ms, _, seq = entry_id.partition("-")
    return int(ms), int(seq or 0)


def queued_event(fields: list[Any]) -> Entry | None:
    """The deferred `queued` event (as open_log in lua/_lib.lua writes it) from the job's
    _LOG_FIELDS; None for an unknown job."""
    if fields[0] is None:
        return None
    created, pool, priority, seq = (text(value) for value in fields[:4])
    event = {"status": "queued", "pool": pool, "priority": int(priority), "seq": int(seq),
             "at_ms": int(created), "type": "state"}  # fmt: skip
    return f"{created}-0", event


def unfold(queued: Entry | None, folded: str, outputs: list[Any]) -> list[Entry]:
    """A finished job's whole log from its folded form (see fold_log in lua/_lib.lua):
    the deferred `queued` event, then the folded entries; a `succeeded` event gets the
    job's `outputs` back, as recorded."""
    out = [queued] if queued is not None else []
    created = stream_id(queued[0])[0] if queued is not None else 0
    for entry in orjson.loads(folded):
        if isinstance(entry[0], str):  # [id, type, data], as folded before id offsets
            entry_id, kind, data = entry
        else:
            offset_ms, seq, kind, data = entry
            entry_id = f"{created + offset_ms}-{seq}"
        if kind == "state" and data.get("status") == JobStatus.SUCCEEDED:
            data["outputs"] = outputs
        out.append((entry_id, {**data, "type": kind}))
    return out


class EventLog:
    """Append to and read the capped, replayable event stream of each job."""

    def __init__(self, redis: aioredis.Redis, keys: Keys, *, maxlen: int) -> None:
        self.redis = redis
        self.keys = keys
        self.maxlen = maxlen

    async def append(self, job_id: str, kind: str, data: Mapping[str, Any]) -> str:
        """Append one event; returns its stream id. NotFound once the job's log is gone
        (never created, or expired after the events grace) -- it is not recreated."""
        entry_id = await self._xadd(self.redis, job_id, kind, data)
        if entry_id is None:
            raise NotFound(f"no event log for job {job_id!r}", job_id=job_id)
        return text(entry_id)

    async def append_many(
        self, job_id: str, events: Sequence[tuple[str, Mapping[str, Any]]]
    ) -> None:
        """Append `events` (kind, data) in order, in one round trip. Entries after the log
        is gone are dropped, as `append` refuses them (NOMKSTREAM)."""
        async with self.redis.pipeline(transaction=False) as pipe:
            for kind, data in events:
                self._xadd(pipe, job_id, kind, data)
            await pipe.execute()

    def _xadd(
        self, client: aioredis.Redis | Pipeline, job_id: str, kind: str, data: Mapping[str, Any]
    ) -> Any:
        """One event's XADD to the job's capped log, never creating it (NOMKSTREAM): on a
        client, the awaitable reply (the id, None when the log is gone); on a pipeline,
        queued."""
        return client.xadd(
            self.keys.events(job_id),
            {"type": kind, "data": orjson.dumps(dict(data))},
            maxlen=self.maxlen,
            approximate=True,
            nomkstream=True,
        )

    async def read(
        self, job_id: str, *, after: str, count: int, block_ms: int | None
    ) -> list[Entry]:
        """Up to `count` events after stream id `after` ("0": from the start), oldest first.
        With `block_ms` (ms), wait that long for a first event when none is there yet;
        None or 0: return at once."""
        key = self.keys.events(job_id)
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.xread({key: after}, count=count)
            pipe.exists(key)
            pipe.hmget(self.keys.job(job_id), *_LOG_FIELDS)
            reply, exists, fields = await pipe.execute()
        if not exists:
            if fields[4] is not None:
                return await self._folded(job_id, fields, after, count)
            if after in LOG_START and (queued := queued_event(fields)) is not None:
                return [queued]
        if reply or not block_ms:
            return self.entries(reply)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + block_ms / 1000
        while (left_ms := int((deadline - loop.time()) * 1000)) > 0:
            reply = await self.redis.xread(
                {key: after}, count=count, block=min(left_ms, BLOCK_SLICE_MS)
            )
            if reply:
                return self.entries(reply)
            # Nothing came: the stream may have expired meanwhile, its log folded.
            folded = await self.redis.hmget(self.keys.job(job_id), *_LOG_FIELDS)
            if folded[4] is not None and not await self.redis.exists(key):
                return await self._folded(job_id, folded, after, count)
        return []

    async def _folded(self, job_id: str, fields: list[Any], after: str, count: int) -> list[Entry]:
        """Up to `count` events after `after` from the folded log (`fields`: _LOG_FIELDS)."""
        raw = await self.redis.hmget(self.keys.job(job_id), "outputs", "pool", "attempts",
                                     "started_ms")  # fmt: skip
        job = {
            "id": job_id,
            "pool": text(raw[1]) if raw[1] is not None else None,
            "attempts": int(raw[2] or 0),
            "started_ms": int(raw[3]) if raw[3] else None,
        }
        outputs = outputs_with_keys(orjson.loads(raw[0]) if raw[0] else [], job)
        entries = unfold(queued_event(fields), text(fields[4]), outputs)
        cursor = stream_id(after)
        return [entry for entry in entries if stream_id(entry[0]) > cursor][:count]

    async def last(self, job_id: str, kind: str) -> dict[str, Any] | None:
        """The newest event of type `kind` among the last LAST_EVENT_SCAN events, or None."""
        entries = await self.redis.xrevrange(self.keys.events(job_id), count=LAST_EVENT_SCAN)
        events = [decode_event(fields) for _entry_id, fields in entries or []]
        if not events:
            # No stream: a folded log (or a queued job's deferred `queued` event).
            folded = await self.read(job_id, after="0", count=self.maxlen, block_ms=None)
            events = [event for _entry_id, event in reversed(folded[-LAST_EVENT_SCAN:])]
        return next((event for event in events if event["type"] == kind), None)

    @staticmethod
    def entries(reply: Any) -> list[Entry]:
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
