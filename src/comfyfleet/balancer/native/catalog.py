"""The fleet's `/object_info`: the union of the ready nodes' node classes, combo options
(checkpoint names, uploads...) merged, and a validation catalogue built on it.

Each node publishes its inventory to Redis once per digest (store/inventory.py, before
the heartbeat that names it); the union comes from there, cached by the set of digests,
so the balancer never needs to reach a node for it.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from comfyfleet.models.node import NodeInfo, NodeState
from comfyfleet.store.input_names import split_annotation
from comfyfleet.store.inputs import input_id_of
from comfyfleet.store.inventory import InventoryStore

Json = dict[str, Any]
# Inputs a class checks itself (ComfyUI's VALIDATE_INPUTS): the file must exist
# (`input_file_exists`).
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


def input_file_exists(object_info: Json) -> Callable[[str], bool]:
    """What the fleet's `LoadImage` can open, as ComfyUI's VALIDATE_INPUTS judges it: an
    upload (`cfin_...`; whether it is there and the caller's is checked when the prompt
    holds it), or a file some node has in its input folder (the union's LoadImage
    choices). A client's own name for an upload was turned into the fleet's before
    (prompts.name_uploads); an `[output]`/`[temp]` file is on one ComfyUI only, under
    another name than the fleet shows, so no node could open it."""
    choices: set[str] = set()
    for class_type, inputs in CUSTOM_VALIDATED.items():
        for name in inputs:
            choices.update(_choices(object_info.get(class_type), name))

    def exists(value: str) -> bool:
        path, kind = split_annotation(value)
        return kind == "input" and (input_id_of(path) is not None or path in choices)

    return exists


def _choices(info: Any, name: str) -> list[str]:
    """The combo options of input `name` of a class's object_info entry (either form)."""
    spec = ((info or {}).get("input") or {}).get("required", {}).get(name)
    if isinstance(spec, list) and spec and isinstance(spec[0], list):
        return [str(c) for c in spec[0]]
    if isinstance(spec, list) and len(spec) > 1 and isinstance(spec[1], dict):
        return [str(c) for c in spec[1].get("options") or []]
    return []


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
