"""The fleet's `/object_info`: the union of the ready nodes' node classes, combo options
(checkpoint names, uploads...) merged, and a validation catalogue built on it.

Each node publishes its inventory to Redis once per digest (store/inventory.py, before
the heartbeat that names it); the union comes from there, cached by the set of digests,
so the balancer never needs to reach a node for it.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any

from comfyfleet.models.node import NodeInfo, NodeState
from comfyfleet.store.inventory import InventoryStore

Json = dict[str, Any]
# Inputs a class checks itself (ComfyUI's VALIDATE_INPUTS): the file must exist, which is
# judged at the node; the fleet refuses names of missing uploads at submit instead.
CUSTOM_VALIDATED = {"LoadImage": ("image",), "LoadImageMask": ("image",)}


class Inventory:
    """The merged object_info of the ready nodes."""

    def __init__(self, store: InventoryStore) -> None:
        self.store = store

    async def object_info(self, nodes: list[NodeInfo]) -> Json:
        """The union of the ready nodes' object_info (of those whose inventory is known)."""
        return (await self.union(nodes))[0]

    async def union(self, nodes: list[NodeInfo]) -> tuple[Json, bool]:
        """(the union, whether every ready node's inventory is in it)."""
        digests = {
            n.inventory_digest for n in nodes if n.state is NodeState.READY and n.inventory_digest
        }
        # Both are answered from this process's caches once every inventory was read
        # (inventories never change), so a prompt costs no Redis round trip for them.
        found = [await self.store.get(digest) for digest in digests]
        return await self.store.union(digests), None not in found


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
