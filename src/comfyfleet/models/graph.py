"""Shape checks on a ComfyUI API-format graph, before it is queued. Pure.

ComfyUI itself validates node classes and input values; this catches what would otherwise
reach a node only to fail there: not an object, a node without class_type, a link to a node
that is not in the graph. Errors name the node.
"""

from __future__ import annotations

from typing import Any

from comfyfleet.errors import ValidationFailed


class GraphInvalid(ValidationFailed):
    code = "graph-invalid"
    title = "Invalid graph"


def is_link(value: Any) -> bool:
    """A ComfyUI input link: `[source_node_id, output_index]`."""
    return (
        isinstance(value, list)
        and len(value) == 2
        and isinstance(value[0], str)
        and isinstance(value[1], int)
        and not isinstance(value[1], bool)
    )


def check_graph(graph: Any) -> dict[str, Any]:
    """The graph if its shape is sound; GraphInvalid naming the first bad node otherwise."""
    if not isinstance(graph, dict) or not graph:
        raise GraphInvalid("graph must be a non-empty object of node id -> node")
    for node_id, node in graph.items():
        if not isinstance(node, dict):
            raise GraphInvalid(f"node {node_id!r} must be an object", node=node_id)
        class_type = node.get("class_type")
        if not isinstance(class_type, str) or not class_type:
            raise GraphInvalid(f"node {node_id!r} has no class_type", node=node_id)
        inputs = node.get("inputs", {})
        if not isinstance(inputs, dict):
            raise GraphInvalid(f"node {node_id!r}: inputs must be an object", node=node_id)
        for name, value in inputs.items():
            if is_link(value) and value[0] not in graph:
                raise GraphInvalid(
                    f"node {node_id!r} input {name!r} links to missing node {value[0]!r}",
                    node=node_id,
                    input=name,
                )
    return graph


def class_types(graph: dict[str, Any]) -> set[str]:
    return {str(node["class_type"]) for node in graph.values()}
