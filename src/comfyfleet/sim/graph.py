"""Execution order and cache keys, following ComfyUI's comfy_execution (graph, caching).

The order is ComfyUI's "topological dissolve": of the nodes whose inputs are ready, run an
output node first, else one that feeds an output node, else one two steps from an output,
else the first ready node in insertion order. Identical nodes get identical cache keys
(class, IS_CHANGED, inputs, and the keys of their ancestors), which is what makes an
identical re-submit a full cache hit.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any


def is_link(value: Any) -> bool:
    return (
        isinstance(value, list)
        and len(value) == 2
        and isinstance(value[0], str)
        and isinstance(value[1], int)
    )


class ExecutionList:
    """Pending nodes and who blocks whom; cached nodes are never added."""

    def __init__(
        self,
        prompt: dict[str, Any],
        is_cached: Callable[[str], bool],
        is_output: Callable[[str], bool],
    ) -> None:
        self.prompt = prompt
        self.is_cached = is_cached
        self.is_output = is_output
        self.pending: dict[str, bool] = {}
        self.block_count: dict[str, int] = {}
        self.blocking: dict[str, dict[str, bool]] = {}

    def add_node(self, node_id: str) -> None:
        stack, links = [node_id], []
        while stack:
            unique_id = stack.pop()
            if unique_id in self.pending:
                continue
            self.pending[unique_id] = True
            self.block_count[unique_id] = 0
            self.blocking[unique_id] = {}
            for value in self.prompt[unique_id]["inputs"].values():
                if is_link(value) and not self.is_cached(value[0]):
                    stack.append(value[0])
                    links.append((value[0], unique_id))
        for source, target in links:
            if target not in self.blocking[source]:
                self.blocking[source][target] = True
                self.block_count[target] += 1

    def is_empty(self) -> bool:
        return not self.pending

    def next_node(self) -> str | None:
        """The node to run next (None only if what is left is a cycle)."""
        ready = [n for n in self.pending if self.block_count[n] == 0]
        if not ready:
            return None
        for node_id in ready:
            if self.is_output(node_id):
                return node_id
        for node_id in ready:
            if any(self.is_output(b) for b in self.blocking[node_id]):
                return node_id
        for node_id in ready:
            for blocked in self.blocking[node_id]:
                if any(self.is_output(b) for b in self.blocking[blocked]):
                    return node_id
        return ready[0]

    def complete(self, node_id: str) -> None:
        del self.pending[node_id]
        for blocked in self.blocking.pop(node_id):
            self.block_count[blocked] -= 1


def cache_keys(
    prompt: dict[str, Any],
    is_changed: Callable[[str], Any],
    with_node_id: Callable[[str], bool],
) -> dict[str, str]:
    """A key per node from its class, IS_CHANGED value, inputs and ancestors' keys."""
    keys: dict[str, str] = {}

    def key(node_id: str, trail: frozenset[str]) -> str:
        if node_id in keys:
            return keys[node_id]
        node = prompt.get(node_id)
        if node is None or node_id in trail:
            return f"missing:{node_id}"
        signature: list[Any] = [node["class_type"], is_changed(node_id)]
        if with_node_id(node_id):
            signature.append(node_id)
        for name in sorted(node["inputs"]):
            value = node["inputs"][name]
            if is_link(value):
                signature.append([name, "link", key(value[0], trail | {node_id}), value[1]])
            else:
                signature.append([name, value])
        keys[node_id] = json.dumps(signature, sort_keys=True, default=repr)
        return keys[node_id]

    for node_id in prompt:
        key(node_id, frozenset())
    return keys
