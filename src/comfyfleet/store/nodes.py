"""Node registration and heartbeats, the ready index, and drain/resume control requests.

A node rewrites its record every heartbeat with a TTL of a few heartbeats, scores itself in
the nodes index by last-seen time, and -- while it is ready to claim -- in the ready index
of each pool it serves (claim reads that to know whether another node could take a job).
A node whose last-seen is older than the lost bound is lost: readers report it so, and the
reaper marks it (`{ns}:lost`) and takes back its jobs (`JobStore.reap_node`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import orjson
import redis.asyncio as aioredis

from comfyfleet.clock import SYSTEM_CLOCK, Clock
from comfyfleet.models.node import NodeInfo, NodeState
from comfyfleet.store.keys import Keys
from comfyfleet.store.scripts import guarded, text

DEFAULT_HEARTBEAT_MS = 2_000
# A node missing this many heartbeats in a row is lost.
LOST_AFTER_BEATS = 3
DEFAULT_LOST_AFTER_MS = DEFAULT_HEARTBEAT_MS * LOST_AFTER_BEATS


class NodeRegistry:
    """Every method raises StoreError (503 at the API edge) when Redis cannot be reached."""

    def __init__(
        self,
        redis: aioredis.Redis,
        keys: Keys,
        clock: Clock = SYSTEM_CLOCK,
        *,
        heartbeat_ms: int = DEFAULT_HEARTBEAT_MS,
    ) -> None:
        self.redis = redis
        self.keys = keys
        self.clock = clock
        self.heartbeat_ms = heartbeat_ms

    @property
    def lost_after_ms(self) -> int:
        return self.heartbeat_ms * LOST_AFTER_BEATS

    @guarded
    async def heartbeat(self, info: NodeInfo) -> None:
        """Write the node's record with a TTL and its last-seen score; list it in the ready
        index of its pools while it is ready, and clear a lost mark (it is back)."""
        now = self.clock.now_ms()
        record = info.model_copy(update={"last_seen_ms": now})
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.set(
                self.keys.node(info.node_id),
                orjson.dumps(record.model_dump(mode="json")),
                px=self.lost_after_ms * 10,
            )
            pipe.zadd(self.keys.nodes, {info.node_id: now})
            pipe.zrem(self.keys.lost, info.node_id)
            for pool in info.pools:
                if info.state is NodeState.READY:
                    pipe.zadd(self.keys.ready(pool), {info.node_id: now})
                else:
                    pipe.zrem(self.keys.ready(pool), info.node_id)
            await pipe.execute()

    @guarded
    async def deregister(self, node_id: str, pools: Sequence[str] = ()) -> None:
        """Remove a node that stopped cleanly (and its entries in the ready index of `pools`)."""
        await self._unindex(node_id, pools, delete_record=True)

    @guarded
    async def get(self, node_id: str) -> NodeInfo | None:
        raw = await self.redis.get(self.keys.node(node_id))
        if raw is None:
            return None
        info = NodeInfo.model_validate(orjson.loads(raw))
        return self._with_liveness(info)

    def _with_liveness(self, info: NodeInfo) -> NodeInfo:
        if self.clock.now_ms() - info.last_seen_ms > self.lost_after_ms:
            return info.model_copy(update={"state": NodeState.LOST})
        return info

    @guarded
    async def all(self) -> list[NodeInfo]:
        """Every registered node, lost ones included (marked LOST), by id."""
        ids = [text(i) for i in await self.redis.zrange(self.keys.nodes, 0, -1)]
        if not ids:
            return []
        raws = await self.redis.mget([self.keys.node(i) for i in ids])
        nodes = [
            self._with_liveness(NodeInfo.model_validate(orjson.loads(raw)))
            for raw in raws
            if raw is not None
        ]
        return sorted(nodes, key=lambda n: n.node_id)

    @guarded
    async def lost_nodes(self) -> list[str]:
        """Ids whose last heartbeat is older than the lost bound."""
        cutoff = self.lost_cutoff_ms()
        return [text(i) for i in await self.redis.zrangebyscore(self.keys.nodes, 0, cutoff)]

    def lost_cutoff_ms(self) -> int:
        """A node last seen at or before this time (ms since the epoch) is lost."""
        return self.clock.now_ms() - self.lost_after_ms

    @guarded
    async def marked_lost(self) -> dict[str, int]:
        """Nodes the reaper marked lost -> when (ms since the epoch)."""
        pairs: Any = await self.redis.zrange(self.keys.lost, 0, -1, withscores=True)
        return {text(node): int(score) for node, score in pairs}

    @guarded
    async def forget(self, node_id: str) -> None:
        """Drop a long-lost node from the indexes (its record expires by itself)."""
        raw = await self.redis.get(self.keys.node(node_id))
        pools = NodeInfo.model_validate(orjson.loads(raw)).pools if raw is not None else []
        await self._unindex(node_id, pools)

    async def _unindex(
        self, node_id: str, pools: Sequence[str], *, delete_record: bool = False
    ) -> None:
        """Take `node_id` out of the node, lost and ready indexes in one transaction."""
        async with self.redis.pipeline(transaction=True) as pipe:
            if delete_record:
                pipe.delete(self.keys.node(node_id))
            pipe.zrem(self.keys.nodes, node_id)
            pipe.zrem(self.keys.lost, node_id)
            for pool in pools:
                pipe.zrem(self.keys.ready(pool), node_id)
            await pipe.execute()

    @guarded
    async def request_drain(self, node_id: str, drain: bool) -> None:
        """Ask a node to drain (True) or resume (False); it reads this every heartbeat."""
        await self.redis.hset(self.keys.node_control(node_id), "drain", "1" if drain else "0")

    @guarded
    async def drain_requested(self, node_id: str) -> bool | None:
        """The last drain request for the node: True, False, or None if none was made."""
        raw = await self.redis.hget(self.keys.node_control(node_id), "drain")
        return None if raw is None else text(raw) == "1"
