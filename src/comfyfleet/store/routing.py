"""Capability classes in Redis: which classes exist, and which inventory digests cover
each (see models/capability.py for what a class is, lua/_lib.lua for the queues).

Both sides write coverage, so that neither a new class nor a new inventory is missed:
the balancer, when a class is first needed, records every published digest that covers
it; a node, after publishing its digest, records every listed class its inventory covers
(all at first, then the ones listed since). Each writes its own fact first (class
listed, digest published) and then reads the other's, so of two that race at least one
sees the other. A digest's inventory never changes, so coverage only grows.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import redis.asyncio as aioredis

from comfyfleet.clock import SYSTEM_CLOCK, Clock
from comfyfleet.errors import NoCapableNode
from comfyfleet.models.capability import Requirement, covers, missing, requirement_of
from comfyfleet.models.job import JobSpec
from comfyfleet.store.inventory import InventoryStore
from comfyfleet.store.keys import Keys
from comfyfleet.store.nodes import NodeRegistry
from comfyfleet.store.scripts import Script, guarded, standalone, text

# Most classes one cover call records (a node starting on a fleet with many classes
# covers them in batches, keeping each script call short).
COVER_BATCH = 100


@dataclass(frozen=True)
class RegisterArgs:
    class_id: str
    requirement: str  # JSON (Requirement.to_json)


@dataclass(frozen=True)
class CoverArgs:
    digest: str
    classes: list[str]
    pools: list[str]


@dataclass(frozen=True)
class ListedClass:
    class_id: str
    requirement: Requirement
    order: int  # when it was first listed (1, 2, ...)


class CapabilityStore:
    """Every method raises StoreError (503 at the API edge) when Redis cannot be reached."""

    def __init__(self, redis: aioredis.Redis, keys: Keys, inventories: InventoryStore) -> None:
        self.redis = redis
        self.keys = keys
        self.inventories = inventories
        self._register: Script[RegisterArgs] = standalone(redis, "class_register")
        self._cover: Script[CoverArgs] = standalone(redis, "cover")
        # Classes this process listed and recorded coverage for, by the digests it knew.
        self._known: dict[str, frozenset[str]] = {}

    @guarded
    async def register(self, requirement: Requirement, digests: Sequence[str]) -> str:
        """List the class of `requirement` (once) and record which of `digests` cover it;
        returns its id. Cheap when this process already did so for the same digests."""
        class_id = requirement.class_id
        wanted = frozenset(digests)
        if self._known.get(class_id) == wanted:
            return class_id
        args = RegisterArgs(class_id, requirement.to_json().decode())
        await self._register(
            [self.keys.requirements, self.keys.classes, self.keys.classes_seq], args
        )
        covering = []
        for digest in sorted(wanted):
            inventory = await self.inventories.get(digest)
            if inventory is not None and covers(inventory.object_info, requirement):
                covering.append(digest)
        if covering:
            await self.redis.sadd(self.keys.cover(class_id), *covering)
        self._known[class_id] = wanted
        return class_id

    @guarded
    async def listed_since(self, order: int) -> list[ListedClass]:
        """Classes first listed after `order` (0: all), oldest first."""
        pairs: Any = await self.redis.zrangebyscore(
            self.keys.classes, f"({order}", "+inf", withscores=True
        )
        if not pairs:
            return []
        ids = [text(member) for member, _ in pairs]
        raws = await self.redis.hmget(self.keys.requirements, ids)
        return [
            ListedClass(class_id, Requirement.from_json(raw), int(score))
            for (class_id, (_, score)), raw in zip(zip(ids, pairs, strict=True), raws, strict=True)
            if raw is not None
        ]

    @guarded
    async def cover(self, digest: str, class_ids: Sequence[str], pools: Sequence[str]) -> int:
        """Record that nodes of `digest` can run `class_ids`; list those with queued jobs
        in the digest's serve set of `pools`. Returns how many (class, pool) had work."""
        listed = 0
        for start in range(0, len(class_ids), COVER_BATCH):
            batch = list(class_ids[start : start + COVER_BATCH])
            keys = [self.keys.cover(c) for c in batch]
            keys += [self.keys.fair(pool, c) for c in batch for pool in pools]
            keys += [self.keys.serve(pool, digest) for pool in pools]
            listed += int(await self._cover(keys, CoverArgs(digest, batch, list(pools))))
        return listed

    @guarded
    async def covering(self, class_id: str) -> set[str]:
        """The digests recorded as covering a class."""
        return {text(d) for d in await self.redis.smembers(self.keys.cover(class_id))}


# How long a submit trusts its last look at which inventories the registered nodes have
# (ms): a node that just registered is routed to at most this much later.
FLEET_LOOK_MS = 1_000


class Router:
    """Capability routing at submit: gives a job spec its capability class, or refuses
    a job no registered node can run (NoCapableNode, naming what is missing). The job
    store calls it inside `enqueue` (`JobStore.router`), so every submit path -- the job
    API, ComfyUI's native /prompt -- goes through it. With no registered node's inventory
    published yet (no node has read its ComfyUI) nothing can be judged: the job keeps the
    class any node runs, as without routing."""

    def __init__(
        self,
        nodes: NodeRegistry,
        capabilities: CapabilityStore,
        clock: Clock = SYSTEM_CLOCK,
    ) -> None:
        self.nodes = nodes
        self.capabilities = capabilities
        self.inventories = capabilities.inventories
        self.clock = clock
        self._fleet: tuple[float, tuple[str, ...]] | None = None

    async def fleet_digests(self) -> tuple[str, ...]:
        """The published inventory digests of the registered nodes (lost ones included:
        they may come back), looked at most every FLEET_LOOK_MS."""
        now = self.clock.monotonic()
        if self._fleet is None or (now - self._fleet[0]) * 1000 > FLEET_LOOK_MS:
            digests = {n.inventory_digest for n in await self.nodes.all() if n.inventory_digest}
            self._fleet = (now, tuple(sorted(digests)))
        return self._fleet[1]

    async def __call__(self, spec: JobSpec) -> JobSpec:
        digests = await self.fleet_digests()
        found = [await self.inventories.get(d) for d in digests]
        inventories = [inv for inv in found if inv is not None]
        if not inventories:
            return spec  # nothing to judge by: any node may take it, as without routing
        union = await self.inventories.union(digests)
        requirement = requirement_of(spec.graph, union)
        if not any(covers(i.object_info, requirement) for i in inventories):
            raise _refusal(requirement, union, [i.object_info for i in inventories])
        covering = [i.digest for i in inventories]
        class_id = await self.capabilities.register(requirement, covering)
        return spec.model_copy(update={"capability": class_id})


def _refusal(
    requirement: Requirement, union: dict[str, Any], infos: list[dict[str, Any]]
) -> NoCapableNode:
    """What is missing: what no node has at all, or else what the closest node lacks."""
    gap = missing(requirement, union)
    alone = not gap.classes and not gap.files
    if alone:
        gap = min(
            (missing(requirement, info) for info in infos),
            key=lambda g: len(g.classes) + len(g.files),
        )
    parts = []
    if gap.classes:
        parts.append("node classes " + ", ".join(gap.classes))
    if gap.files:
        parts.append(
            "model files " + ", ".join(f"{f.name} ({f.class_type}.{f.input})" for f in gap.files)
        )
    where = "the closest node lacks" if alone else "no registered node has"
    detail = f"no node can run this job: {where} " + "; ".join(parts)
    if alone:
        detail += " (every part exists in the fleet, but no single node has all of it)"
    return NoCapableNode(
        detail,
        missing_classes=list(gap.classes),
        missing_files=[
            {"class_type": f.class_type, "input": f.input, "name": f.name} for f in gap.files
        ],
    )
