"""Node inventories in Redis: what each kind of node can run, by inventory digest.

A node's inventory is its ComfyUI's `/object_info` (node classes and their inputs, combo
option lists naming model files) and its model files by folder; `node/state.py` digests
the class names and files. Nodes with the same digest have the same inventory, so it is
stored once per digest, when a node first publishes it, and never changes afterwards.

`union(digests)` merges several inventories into one object_info: every class any of them
has, and for a class several have, its combo option lists merged (a checkpoint on any node
is a valid choice for the fleet). That is what the balancer shows as the fleet's
/object_info and checks prompts against. A union is a pure function of its digest set, so
it is cached in Redis by that set (and in this process), never invalidated, only expired.

A node whose models change has a new digest, and each inventory is a whole /object_info
(313 KB for a bare ComfyUI 0.3.64, megabytes with custom nodes), so inventories no
registered node has are dropped: `sweep` (the reaper, every minute) notes since when each
digest has been unused and drops it with its coverage after UNUSED_KEEP_MS. A node that
comes back with a dropped digest hears so from its heartbeat and publishes it again.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import orjson
import redis.asyncio as aioredis

from comfyfleet.models.job import ANY_CAPABILITY
from comfyfleet.store.keys import Keys
from comfyfleet.store.scripts import Script, guarded, standalone, text

# A cached union nobody asked for in this long is dropped (ms); recomputing one is cheap.
UNION_TTL_MS = 24 * 3600 * 1000
# Unions kept parsed in this process (one per digest set in use: a handful).
LOCAL_UNIONS = 8
# Inventories kept parsed in this process (one per kind of node in the fleet).
LOCAL_INVENTORIES = 32
# An inventory no registered node has had for this long is dropped (ms). Registered includes
# nodes lost for up to the reaper's forget delay (10 minutes): a node back from a longer
# outage publishes its inventory again.
UNUSED_KEEP_MS = 60 * 60 * 1000


@dataclass(frozen=True)
class DropArgs:
    digest: str
    cover_prefix: str
    serve_prefix: str
    any_class: str


@dataclass(frozen=True)
class Inventory:
    digest: str
    object_info: dict[str, Any]
    models: dict[str, list[str]]  # model folder -> file names


def union_id(digests: Iterable[str]) -> str:
    """The cache id of a set of digests (order and repeats do not matter)."""
    joined = ",".join(sorted(set(digests)))
    return hashlib.sha256(joined.encode()).hexdigest()[:16]


def _merge_choices(into: list[Any], more: list[Any]) -> list[Any]:
    seen = {orjson.dumps(c) for c in into}
    return into + [c for c in more if orjson.dumps(c) not in seen]


def _merge_input(spec: Any, other: Any) -> Any:
    """One input spec `[type, options?]` with another node's: combo choices merged (the
    old form `[[choices...], {...}]` and the `["COMBO", {"options": [...]}]` form)."""
    if not isinstance(spec, list) or not isinstance(other, list) or not spec or not other:
        return spec
    if isinstance(spec[0], list) and isinstance(other[0], list):
        return [_merge_choices(spec[0], other[0]), *spec[1:]]
    if spec[0] == "COMBO" and other[0] == "COMBO" and len(spec) > 1 and len(other) > 1:
        mine, theirs = spec[1], other[1]
        if isinstance(mine, dict) and isinstance(theirs, dict):
            options = _merge_choices(list(mine.get("options") or []), theirs.get("options") or [])
            return [spec[0], {**mine, "options": options}, *spec[2:]]
    return spec


def _merge_class(info: dict[str, Any], other: Mapping[str, Any]) -> dict[str, Any]:
    inputs = dict(info.get("input") or {})
    for section, specs in (other.get("input") or {}).items():
        if not isinstance(specs, dict):
            continue
        mine = dict(inputs.get(section) or {})
        for name, spec in specs.items():
            mine[name] = _merge_input(mine[name], spec) if name in mine else spec
        inputs[section] = mine
    return {**info, "input": inputs}


def merge_object_info(infos: Iterable[Mapping[str, Any]]) -> dict[str, Any]:
    """The union of several object_info documents (pure): every class, combos merged; for
    anything else about a class the first document that has it wins."""
    merged: dict[str, Any] = {}
    for info in infos:
        for class_type, spec in info.items():
            if class_type not in merged:
                merged[class_type] = spec
            elif isinstance(spec, dict) and isinstance(merged[class_type], dict):
                merged[class_type] = _merge_class(merged[class_type], spec)
    return merged


class InventoryStore:
    """Every method raises StoreError (503 at the API edge) when Redis cannot be reached."""

    def __init__(self, redis: aioredis.Redis, keys: Keys) -> None:
        self.redis = redis
        self.keys = keys
        self._unions: OrderedDict[str, dict[str, Any]] = OrderedDict()
        self._inventories: OrderedDict[str, Inventory] = OrderedDict()
        self._drop: Script[DropArgs] = standalone(redis, "inventory_drop")

    @guarded
    async def publish(
        self, digest: str, object_info: Mapping[str, Any], models: Mapping[str, list[str]]
    ) -> bool:
        """Store a node's inventory under its digest, once (a digest's inventory never
        changes); list the digest as known. True when this call stored it."""
        body = orjson.dumps({"object_info": object_info, "models": models})
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.set(self.keys.inventory(digest), body, nx=True)
            pipe.sadd(self.keys.inventories, digest)
            stored, _ = await pipe.execute()
        return bool(stored)

    @guarded
    async def known(self) -> set[str]:
        """Every digest published so far."""
        raw = await self.redis.smembers(self.keys.inventories)
        return {d.decode() if isinstance(d, bytes) else str(d) for d in raw}

    @guarded
    async def get(self, digest: str) -> Inventory | None:
        """A published inventory (kept parsed in this process: it never changes), or None.
        Callers must not change the answer."""
        if digest in self._inventories:
            self._inventories.move_to_end(digest)
            return self._inventories[digest]
        raw = await self.redis.get(self.keys.inventory(digest))
        if raw is None:
            return None
        doc = orjson.loads(raw)
        found = Inventory(digest, doc["object_info"], doc["models"])
        self._inventories[digest] = found
        while len(self._inventories) > LOCAL_INVENTORIES:
            self._inventories.popitem(last=False)
        return found

    @guarded
    async def union(self, digests: Iterable[str]) -> dict[str, Any]:
        """The merged object_info of the inventories of `digests` (unknown ones add
        nothing); cached by the digest set. Callers must not change the answer."""
        wanted = sorted(set(digests))
        uid = union_id(wanted)
        if uid in self._unions:
            self._unions.move_to_end(uid)
            return self._unions[uid]
        raw = await self.redis.get(self.keys.inventory_union(uid))
        if raw is not None:
            merged: dict[str, Any] = orjson.loads(raw)
        else:
            found = [await self.get(d) for d in wanted]
            merged = merge_object_info(inv.object_info for inv in found if inv is not None)
            if None in found:
                # A digest not published yet: answer, but cache nothing, or the union
                # would stay short of that node's classes.
                return merged
            await self.redis.set(
                self.keys.inventory_union(uid), orjson.dumps(merged), px=UNION_TTL_MS
            )
        self._unions[uid] = merged
        while len(self._unions) > LOCAL_UNIONS:
            self._unions.popitem(last=False)
        return merged

    @guarded
    async def sweep(
        self, in_use: set[str], now_ms: int, keep_ms: int = UNUSED_KEEP_MS
    ) -> list[str]:
        """Drop the inventories no registered node has had for `keep_ms` (`in_use`: the
        digests of the registered nodes, lost ones included; `now_ms`: the fleet's clock),
        with their coverage (lua/inventory_drop.lua). Returns the digests dropped."""
        known = await self.known()
        raw = await self.redis.hgetall(self.keys.inventories_unused)
        since = {text(digest): int(ms) for digest, ms in raw.items()}
        back = [d for d in since if d in in_use or d not in known]
        newly = sorted(known - in_use - since.keys())
        async with self.redis.pipeline(transaction=False) as pipe:
            if back:
                pipe.hdel(self.keys.inventories_unused, *back)
            if newly:
                pipe.hset(self.keys.inventories_unused, mapping=dict.fromkeys(newly, now_ms))
            await pipe.execute()
        dropped = sorted(d for d, ms in since.items()
                         if d in known and d not in in_use and now_ms - ms >= keep_ms)  # fmt: skip
        for digest in dropped:
            keys = [self.keys.inventory(digest), self.keys.inventories,
                    self.keys.inventories_unused, self.keys.classes, self.keys.depth]  # fmt: skip
            prefixes = self.keys.scheduling_prefixes()
            args = DropArgs(digest, prefixes["cover_prefix"], prefixes["serve_prefix"],
                            ANY_CAPABILITY)  # fmt: skip
            await self._drop(keys, args)
            self._inventories.pop(digest, None)
        return dropped
