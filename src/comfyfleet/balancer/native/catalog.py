"""The fleet's `/object_info`: the union of the ready nodes' node classes, combo options
(checkpoint names, uploads...) merged, and a validation catalogue built on it.

Each distinct inventory (a node's heartbeat carries its digest) is read once, from one node
that has it, through the node's own API (`/api/v1/comfy/object_info`), and the union is
cached by the set of digests: it is rebuilt only when a node with a new inventory joins or
one leaves. (The shared inventory store of contract C2 replaces the read from a node when
it lands; the union and the cache key stay.)
"""

from __future__ import annotations

import asyncio
import copy
from dataclasses import dataclass
from typing import Any

import aiohttp
import structlog

from comfyfleet.models.node import NodeInfo, NodeState

log = structlog.get_logger(__name__)

Json = dict[str, Any]
# Inputs a class checks itself (ComfyUI's VALIDATE_INPUTS): the file must exist, which is
# judged at the node; the fleet refuses names of missing uploads at submit instead.
CUSTOM_VALIDATED = {"LoadImage": ("image",), "LoadImageMask": ("image",)}


def merge_object_info(infos: list[Json]) -> Json:
    """Union of classes; for a class several inventories have, combo options merged (in
    first-seen order), everything else from the first."""
    merged: Json = {}
    for info in infos:
        for name, entry in info.items():
            if name not in merged:
                merged[name] = copy.deepcopy(entry)
                continue
            _merge_combos(merged[name].get("input", {}), entry.get("input", {}))
    return merged


def _merge_combos(into: Json, other: Json) -> None:
    for category, inputs in other.items():
        if not isinstance(inputs, dict):
            continue
        for name, spec in inputs.items():
            mine = into.get(category, {}).get(name)
            if not (isinstance(spec, list) and isinstance(mine, list) and spec and mine):
                continue
            if isinstance(mine[0], list) and isinstance(spec[0], list):
                mine[0] += [option for option in spec[0] if option not in mine[0]]


class Inventory:
    """The merged object_info of the ready nodes, cached by their digests."""

    def __init__(self, http: aiohttp.ClientSession) -> None:
        self.http = http
        self._by_digest: dict[str, Json] = {}
        self._union: tuple[frozenset[str], Json] | None = None

    async def object_info(self, nodes: list[NodeInfo]) -> Json:
        """The union of the ready nodes' object_info (of those that answered)."""
        return (await self.union(nodes))[0]

    async def union(self, nodes: list[NodeInfo]) -> tuple[Json, bool]:
        """(the union, whether every ready node's inventory is in it)."""
        ready = [n for n in nodes if n.state is NodeState.READY and n.inventory_digest]
        holders: dict[str, NodeInfo] = {}
        for node in ready:
            holders.setdefault(node.inventory_digest or "", node)
        digests = frozenset(holders)
        if self._union is not None and self._union[0] == digests:
            return self._union[1], True
        missing = [d for d in digests if d not in self._by_digest]
        fetched = await asyncio.gather(*(self._fetch(holders[d]) for d in missing))
        for digest, info in zip(missing, fetched, strict=True):
            if info is not None:
                self._by_digest[digest] = info
        union = merge_object_info([self._by_digest[d] for d in sorted(digests)
                                   if d in self._by_digest])  # fmt: skip
        complete = all(d in self._by_digest for d in digests)
        if complete:
            self._union = (digests, union)
        return union, complete

    async def _fetch(self, node: NodeInfo) -> Json | None:
        url = f"{node.url.rstrip('/')}/api/v1/comfy/object_info"
        try:
            async with self.http.get(url) as response:
                response.raise_for_status()
                info: Json = await response.json()
                return info
        except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
            log.warning("inventory_read_failed", node_id=node.node_id, error=repr(exc))
            return None


@dataclass(frozen=True)
class InfoClass:
    """A node class as validation needs it, from its /object_info entry."""

    name: str
    info: Json

    @property
    def custom_validated(self) -> tuple[str, ...]:
        return CUSTOM_VALIDATED.get(self.name, ())

    @property
    def output_node(self) -> bool:
        return bool(self.info.get("output_node"))

    @property
    def return_types(self) -> list[str]:
        types: list[str] = self.info.get("output", [])
        return types


@dataclass(frozen=True)
class InfoCatalogue:
    """A validation catalogue over a merged object_info (comfy/validation.py)."""

    object_info: Json

    def get(self, name: str) -> InfoClass | None:
        entry = self.object_info.get(name)
        return InfoClass(name, entry) if isinstance(entry, dict) else None

    def input_types(self, node: InfoClass) -> dict[str, dict[str, list[Any]]]:
        inputs: dict[str, dict[str, list[Any]]] = copy.deepcopy(node.info.get("input", {}))
        return inputs
