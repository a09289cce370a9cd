"""Which prompts a ComfyUI client posted, and one blocking read over them and their logs.

ComfyUI sends a prompt's frames to the socket of the `client_id` it was posted with. The
fleet keeps, per (principal, client_id), a capped STREAM of the ids of the prompts posted
with it (`{ns}:comfy-client:<owner>:<client>`). A native websocket (on any replica) reads
that stream and the event logs of the prompts it names in ONE blocking XREAD, so a new
prompt wakes it as fast as a new event does, with no pub/sub to lose and no polling.

The feed entry is written after the job is enqueued, by a separate command: it is an index
for sockets, not job state (the job is whole without it), so it needs no atomic step with
the enqueue. Keyed by the principal too, so one principal's client id never shows another
principal's prompts.
"""

from __future__ import annotations

import re
from typing import Any

import orjson
import redis.asyncio as aioredis

from comfyfleet.store.events import BLOCK_SLICE_MS, decode_event
from comfyfleet.store.keys import Keys
from comfyfleet.store.scripts import guarded, text

# How long a client's feed outlives its last prompt (ms), and how many ids it keeps.
FEED_TTL_MS = 24 * 3600 * 1000
FEED_MAXLEN = 1000
# What a client id may be (ComfyUI clients use uuid4s or hex strings); it becomes part of
# a key.
CLIENT_ID_RE = re.compile(r"^[A-Za-z0-9_.:-]{1,128}$")

Entry = tuple[str, dict[str, Any]]


class PromptFeed:
    def __init__(self, redis: aioredis.Redis, keys: Keys) -> None:
        self.redis = redis
        self.keys = keys

    def key(self, owner: str, client_id: str) -> str:
        return self.keys.comfy_client(owner, client_id)

    def events_key(self, job_id: str) -> str:
        return self.keys.events(job_id)

    @guarded
    async def announce(self, owner: str, client_id: str, job_id: str) -> None:
        """Add `job_id` to the client's feed (and keep the feed for FEED_TTL_MS more)."""
        key = self.key(owner, client_id)
        async with self.redis.pipeline(transaction=True) as pipe:
            entry: dict[Any, Any] = {"type": "prompt", "data": orjson.dumps({"job": job_id})}
            pipe.xadd(key, entry, maxlen=FEED_MAXLEN, approximate=True)
            pipe.pexpire(key, FEED_TTL_MS)
            await pipe.execute()

    @guarded
    async def since(self, owner: str, client_id: str, start_ms: int) -> list[str]:
        """The ids of the jobs posted from `start_ms` on (ms), oldest first."""
        entries: Any = await self.redis.xrange(self.key(owner, client_id), min=f"{start_ms}-0")
        return [str(decode_event(fields).get("job", "")) for _, fields in entries]

    @guarded
    async def read(self, cursors: dict[str, str], block_ms: int) -> dict[str, list[Entry]]:
        """Entries after each stream's cursor (key -> stream id), waiting up to `block_ms`
        (ms; cut into slices shorter than the socket timeout) for a first one. A stream
        that does not exist yet (a queued job's log) is waited on like an empty one."""
        streams: dict[Any, Any] = dict(cursors)
        reply: Any = await self.redis.xread(
            streams, count=100, block=max(1, min(block_ms, BLOCK_SLICE_MS))
        )
        out: dict[str, list[Entry]] = {}
        for stream, entries in reply or []:
            out[text(stream)] = [(text(i), decode_event(f)) for i, f in entries]
        return out

    @guarded
    async def unfinished(self, owner: str | None) -> int:
        """How many queued and running jobs `owner` has (None: everyone's): the tenant's
        counters, which the job scripts keep in the same step as each status change."""
        if owner is None:
            async with self.redis.pipeline(transaction=False) as pipe:
                for status in ("queued", "running"):
                    pipe.zcard(self.keys.jobs_by_status(status))
                return sum(int(n) for n in await pipe.execute())
        counts = await self.redis.hmget(self.keys.tenant(owner), "queued", "running")
        return sum(int(n) for n in counts if n is not None)
