"""Node registration and heartbeats, the ready index, and drain/resume control requests.

A node rewrites its record every heartbeat with a TTL of a few heartbeats, scores itself in
the nodes index by last-seen time, and -- while it is ready to claim -- in the ready index
of each pool it serves (claim reads that to know whether another node could take a job).
A node whose last-seen is older than the lost bound is lost: readers report it so, and the
reaper marks it (`{ns}:lost`) and takes back its jobs (`JobStore.reap_node`). Last-seen
times are the fleet's clock (Redis TIME, stamped by lua/heartbeat.lua), never the node's:
a node's own clock only serves to measure how far it is off (`heartbeat` returns that).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import orjson
import redis.asyncio as aioredis

from comfyfleet.clock import SYSTEM_CLOCK, Clock
from comfyfleet.models.node import NodeInfo, NodeState
from comfyfleet.store.keys import Keys
from comfyfleet.store.scripts import NoArgs, Script, guarded, standalone, text

DEFAULT_HEARTBEAT_MS = 2_000
# A node missing this many heartbeats in a row is lost.
LOST_AFTER_BEATS = 3
DEFAULT_LOST_AFTER_MS = DEFAULT_HEARTBEAT_MS * LOST_AFTER_BEATS


@dataclass(frozen=True)
class HeartbeatArgs:
    node_id: str
    record: str  # NodeInfo JSON; last_seen_ms is the score the script stamps
    record_ttl_ms: int
    ready: bool
    inventory_key: str  # '' without an inventory digest


@dataclass(frozen=True)
class Beat:
    """What a heartbeat tells its node."""

    skew_ms: int  # how far the node's clock is ahead of the fleet's (negative: behind)
    inventory_missing: bool  # its inventory was dropped (store/inventory.py sweep)


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
        self._heartbeat: Script[HeartbeatArgs] = standalone(redis, "heartbeat", clock=True)
        self._clock_now: Script[NoArgs] = standalone(redis, "clock_now", clock=True)

    @property
    def lost_after_ms(self) -> int:
        return self.heartbeat_ms * LOST_AFTER_BEATS

    @guarded
    async def heartbeat(self, info: NodeInfo) -> Beat:
        """Write the node's record with a TTL and its last-seen score (the fleet's clock);
        list it in the ready index of its pools while it is ready, and clear a lost mark
        (it is back). Answers how far this process's clock is ahead of the fleet's,
        measured around the call, and whether the inventory it names is gone."""
        keys = [self.keys.node(info.node_id), self.keys.nodes, self.keys.lost, self.keys.clock]
        keys += [self.keys.ready(pool) for pool in info.pools]
        args = HeartbeatArgs(
            node_id=info.node_id,
            record=orjson.dumps(info.model_dump(mode="json")).decode(),
            record_ttl_ms=self.lost_after_ms * 10,
            ready=info.state is NodeState.READY,
            inventory_key=self.keys.inventory(info.inventory_digest) if info.inventory_digest
            else "",
        )  # fmt: skip
        sent = self.clock.now_ms()
        fleet_now, missing = await self._heartbeat(keys, args)
        return Beat((sent + self.clock.now_ms()) // 2 - int(fleet_now), bool(missing))

    @guarded
    async def now_ms(self) -> int:
        """The fleet's time (ms since the epoch): what heartbeats and the reaper compare."""
        return int(await self._clock_now([self.keys.clock], NoArgs()))

    @guarded
    async def deregister(self, node_id: str, pools: Sequence[str] = ()) -> None:
        """Remove a node that stopped cleanly (and its entries in the ready index of `pools`)."""
        await self._unindex(node_id, pools, delete_record=True)

    @guarded
    async def get(self, node_id: str) -> NodeInfo | None:
        nodes = await self._read([node_id])
        return nodes[0] if nodes else None

    @guarded
    async def all(self) -> list[NodeInfo]:
        """Every registered node, lost ones included (marked LOST), by id."""
        ids = [text(i) for i in await self.redis.zrange(self.keys.nodes, 0, -1)]
        return sorted(await self._read(ids), key=lambda n: n.node_id)

    async def _read(self, ids: Sequence[str]) -> list[NodeInfo]:
        """The records of `ids` that exist, each with its last-seen time (the score the
        heartbeat script stamped) and LOST when that is older than the lost bound."""
        if not ids:
            return []
        now = await self.now_ms()
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.mget([self.keys.node(i) for i in ids])
            pipe.zmscore(self.keys.nodes, list(ids))
            raws, seen = await pipe.execute()
        nodes = []
        for raw, last_seen in zip(raws, seen, strict=True):
            if raw is None or last_seen is None:
                continue
            info = NodeInfo.model_validate(orjson.loads(raw))
            update: dict[str, Any] = {"last_seen_ms": int(last_seen)}
            if now - int(last_seen) > self.lost_after_ms:
                update["state"] = NodeState.LOST
            nodes.append(info.model_copy(update=update))
        return nodes

    @guarded
    async def lost_nodes(self) -> list[str]:
        """Ids whose last heartbeat is older than the lost bound (the fleet's clock)."""
        cutoff = await self.now_ms() - self.lost_after_ms
        return [text(i) for i in await self.redis.zrangebyscore(self.keys.nodes, 0, cutoff)]

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
