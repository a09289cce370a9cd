"""The params contract between two versions of a workflow. Pure.

Clients call a workflow by name with params; publishing a new version must not break the
calls that worked against the active one. A new version breaks the contract when one of the
active version's params is gone, changed type, became required, or (for an enum) lost a
choice, or when a param carried over from the active version binds a node title the new
graph no longer has. Widening (new optional params, looser bounds, new choices) is fine.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from comfyfleet.templates.model import Template, titles


@dataclass(frozen=True)
class Break:
    """One way a new version breaks the contract: the param and why."""

    param: str
    reason: str


def contract_breaks(active: Template, new: Template) -> list[Break]:
    """Every break of `active`'s params contract by `new`, in the active version's order."""
    out: list[Break] = []
    for name, old in active.params.items():
        spec = new.params.get(name)
        if spec is None:
            out.append(Break(name, "is gone"))
        elif spec.type != old.type:
            out.append(Break(name, f"changed type from {old.type} to {spec.type}"))
        elif spec.required and not old.required:
            out.append(Break(name, "became required"))
        elif old.choices and spec.choices and set(old.choices) - set(spec.choices):
            lost = sorted(map(str, set(old.choices) - set(spec.choices)))
            out.append(Break(name, f"lost choices {lost}"))
    return out


def missing_titles(declaration: dict[str, Any], graph: dict[str, Any]) -> list[Break]:
    """Params of `declaration` (a params file) binding a node title `graph` does not have."""
    present = titles(graph)
    out = []
    for name, raw in (declaration.get("params") or {}).items():
        binds = raw.get("bind", []) if isinstance(raw, dict) else []
        gone = [b.get("node") for b in binds if isinstance(b, dict)]
        gone = [t for t in gone if t not in present]
        if gone:
            out.append(Break(name, f"binds node title {gone[0]!r}, which the new graph lacks"))
    return out


def without_params(declaration: dict[str, Any], names: set[str]) -> dict[str, Any]:
    """A copy of a params file without the named params (a forced publish drops params whose
    node is gone from the graph, rather than refusing a graph it was told to take)."""
    params = {k: v for k, v in (declaration.get("params") or {}).items() if k not in names}
    return {**declaration, "params": params}


def describe(breaks: list[Break]) -> str:
    return "; ".join(f"param {b.param!r} {b.reason}" for b in breaks)
