"""The pure core of templates: check params, resolve randomness, render a graph.

Nothing here does I/O or reads a clock; randomness comes in as an argument, so the same
template and the same params always render the same graph.
"""

from __future__ import annotations

import copy
import random
from collections.abc import Mapping
from typing import Any

from comfyfleet.errors import ParamError, WorkflowError
from comfyfleet.templates.model import MAX_RANDOM_SEED, RANDOM_SEED, Template, titles


def validate_params(template: Template, params: Mapping[str, Any]) -> dict[str, Any]:
    """The params checked and completed with defaults; ParamError naming the first bad one.

    Optional params without a default and not given are left out: the graph keeps its value.
    Seeds not given come back as -1 (random); pass the result through `resolve_params`."""
    unknown = sorted(params.keys() - template.params.keys())
    if unknown:
        known = ", ".join(template.params) or "none"
        raise ParamError(
            f"workflow {template.name!r} has no param {unknown[0]!r} (params: {known})",
            param=unknown[0],
        )
    out: dict[str, Any] = {}
    for name, spec in template.params.items():
        if name in params:
            value = params[name]
        elif spec.required:
            raise ParamError(f"param {name!r} is required", param=name)
        elif spec.default is not None:
            value = spec.default
        elif spec.type == "seed":
            value = RANDOM_SEED
        else:
            continue
        problem = spec.check(value)
        if problem:
            raise ParamError(f"param {name!r} {problem}, got {_short(value)}", param=name)
        out[name] = float(value) if spec.type == "number" else value
    return out


def _short(value: Any, limit: int = 80) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def resolve_params(
    template: Template, params: Mapping[str, Any], rng: random.Random
) -> dict[str, Any]:
    """`params` with every random seed (-1 or absent) replaced by a draw from `rng`, so the
    job records the seed that actually ran."""
    out = dict(params)
    for name, spec in template.params.items():
        if spec.type == "seed" and out.get(name, RANDOM_SEED) == RANDOM_SEED:
            out[name] = rng.randint(0, MAX_RANDOM_SEED)
    return out


def render(template: Template, params: Mapping[str, Any]) -> dict[str, Any]:
    """A new API-format graph with each param written to the inputs it binds (by node title).

    The template is never changed. Seeds must be resolved first: -1 is refused here because
    ComfyUI would reject it."""
    values = validate_params(template, params)
    graph = copy.deepcopy(template.graph)
    by_title = titles(graph)
    for name, value in values.items():
        spec = template.params[name]
        if spec.type == "seed" and value == RANDOM_SEED:
            raise ParamError(
                f"param {name!r} is still random (-1); resolve_params first", param=name
            )
        for binding in spec.bind:
            _node(template, graph, by_title, binding.node, name)["inputs"][binding.input] = value
    return graph


def _node(
    template: Template,
    graph: dict[str, Any],
    by_title: dict[str, list[str]],
    title: str,
    param: str,
) -> dict[str, Any]:
    # The loader already refused these; a template read back from Redis was loaded by some
    # other (maybe older) release, so check again rather than fail with a KeyError.
    ids = by_title.get(title, [])
    if len(ids) != 1:
        raise WorkflowError(
            f"workflow {template.name!r} version {template.version}: param {param!r} binds "
            f"node {title!r}, found {len(ids)} nodes with that title",
            node=title,
            param=param,
        )
    node: dict[str, Any] = graph[ids[0]]
    return node
