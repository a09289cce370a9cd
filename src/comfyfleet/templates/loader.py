"""Read a workflows folder once and validate every template in it.

A workflow is `NAME-api.json` (ComfyUI API format, required), `NAME.params.json` (the typed
params, optional: no params means the graph runs as is) and `NAME.json` (the UI format,
optional, kept so a UI can load it). Errors raise WorkflowError naming the file and the node;
UI-file problems are only warnings, because the API file alone is enough to run.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
from pydantic import ValidationError

from comfyfleet.errors import WorkflowError
from comfyfleet.models.graph import is_link
from comfyfleet.templates.model import (
    PARAM_NAME_PATTERN,
    PARAM_TYPES,
    WORKFLOW_NAME_PATTERN,
    ParamSpec,
    Template,
    content_version,
    titles,
)

API_SUFFIX = "-api.json"
PARAMS_SUFFIX = ".params.json"
UI_SUFFIX = ".json"
# UI-only node types that never appear in an API export.
UI_ONLY_TYPES = frozenset({"Note", "MarkdownNote", "Reroute", "PrimitiveNode"})


@dataclass
class Loaded:
    """What a folder held: templates by name, and warnings for the caller to log.
    Iterating yields the templates."""

    templates: dict[str, Template] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)

    def __iter__(self) -> Iterator[Template]:
        return iter(self.templates.values())


def load_folders(folders: Iterable[Path]) -> Loaded:
    """Every folder in order; a later folder's workflow replaces an earlier one's of the same
    name (so an operator's folder can override a built-in), with a warning."""
    out = Loaded()
    for folder in folders:
        loaded = load_folder(folder)
        for name in loaded.templates.keys() & out.templates.keys():
            out.warnings.append(f"{folder}: workflow {name!r} overrides an earlier one")
        out.templates.update(loaded.templates)
        out.warnings.extend(loaded.warnings)
    return out


def load_folder(folder: Path) -> Loaded:
    if not folder.is_dir():
        raise WorkflowError(f"{folder}: not a folder of workflows", file=str(folder))
    out = Loaded()
    for api_path in sorted(folder.glob(f"*{API_SUFFIX}")):
        template, warnings = load_template(api_path)
        out.templates[template.name] = template
        out.warnings.extend(warnings)
    for params_path in sorted(folder.glob(f"*{PARAMS_SUFFIX}")):
        name = params_path.name.removesuffix(PARAMS_SUFFIX)
        if name not in out.templates:
            raise WorkflowError(
                f"{params_path.name}: no {name}{API_SUFFIX} beside it", file=params_path.name
            )
    return out


def load_template(api_path: Path) -> tuple[Template, list[str]]:
    """One workflow from its API file (and the params and UI files sharing its prefix)."""
    name = api_path.name.removesuffix(API_SUFFIX)
    graph = _read_object(api_path)
    params_path = api_path.with_name(name + PARAMS_SUFFIX)
    declaration = _read_object(params_path) if params_path.exists() else {}
    ui_path = api_path.with_name(name + UI_SUFFIX)
    if not ui_path.exists():
        ui, warnings = (
            None,
            [f"{ui_path.name}: no UI file beside {api_path.name}; the UI cannot open it"],
        )
    else:
        try:
            ui, warnings = _read_object(ui_path), []
        except WorkflowError as exc:
            ui, warnings = None, [f"{exc.detail} (UI file ignored)"]
    files = Files(api_path.name, params_path.name, ui_path.name)
    template, more = build_template(name, graph, declaration, ui, files)
    return template, warnings + more


@dataclass(frozen=True)
class Files:
    """What to call the three parts of a workflow in errors: file names, or body fields."""

    api: str
    params: str
    ui: str


def build_template(
    name: str,
    graph: dict[str, Any],
    declaration: dict[str, Any],
    ui: dict[str, Any] | None,
    files: Files,
) -> tuple[Template, list[str]]:
    """Check and assemble a template from its parts; WorkflowError naming the part and node.
    The warnings are about the UI graph only (the API graph alone is enough to run)."""
    if not re.match(WORKFLOW_NAME_PATTERN, name):
        raise WorkflowError(
            f"{files.api}: workflow name {name!r} must match {WORKFLOW_NAME_PATTERN}",
            file=files.api,
        )
    check_graph(files.api, graph)
    description, params = _parse_declaration(files.params, declaration)
    _check_bindings(files.params, files.api, graph, params)
    warnings = _check_ui(ui, files, graph) if ui is not None else []
    template = Template(
        name=name,
        version=content_version(graph, declaration),
        description=description,
        params=params,
        graph=graph,
        ui=ui,
        declaration=declaration,
    )
    return template, warnings


def _read_object(path: Path) -> dict[str, Any]:
    try:
        data = orjson.loads(path.read_bytes())
    except OSError as exc:
        raise WorkflowError(f"{path.name}: cannot read: {exc}", file=path.name) from None
    except orjson.JSONDecodeError as exc:
        raise WorkflowError(f"{path.name}: not valid JSON: {exc}", file=path.name) from None
    if not isinstance(data, dict):
        raise WorkflowError(f"{path.name}: must hold a JSON object", file=path.name)
    return data


def check_graph(file: str, graph: dict[str, Any]) -> None:
    """WorkflowError naming `file` and the node unless `graph` is a well-formed API graph."""
    if not graph:
        raise WorkflowError(f"{file}: the graph has no nodes", file=file)
    for node_id, node in graph.items():
        where = f"{file}: node {node_id!r}"
        if not isinstance(node, dict):
            raise WorkflowError(f"{where} must be an object", file=file, node=node_id)
        class_type = node.get("class_type")
        if not isinstance(class_type, str) or not class_type:
            raise WorkflowError(f"{where} has no class_type", file=file, node=node_id)
        inputs = node.get("inputs", {})
        if not isinstance(inputs, dict):
            raise WorkflowError(f"{where}: 'inputs' must be an object", file=file, node=node_id)
        for input_name, value in inputs.items():
            if is_link(value) and value[0] not in graph:
                raise WorkflowError(
                    f"{where} ({class_type}) input {input_name!r} links to missing node "
                    f"{value[0]!r}",
                    file=file,
                    node=node_id,
                    input=input_name,
                )


def _parse_declaration(file: str, declaration: dict[str, Any]) -> tuple[str, dict[str, ParamSpec]]:
    unknown = declaration.keys() - {"description", "params"}
    if unknown:
        raise WorkflowError(f"{file}: unknown keys {sorted(unknown)}", file=file)
    description = declaration.get("description", "")
    raw_params = declaration.get("params", {})
    if not isinstance(description, str) or not isinstance(raw_params, dict):
        raise WorkflowError(
            f"{file}: 'description' must be a string and 'params' an object", file=file
        )
    params: dict[str, ParamSpec] = {}
    for name, raw in raw_params.items():
        params[name] = _parse_param(file, name, raw)
    return description, params


def _parse_param(file: str, name: str, raw: Any) -> ParamSpec:
    where = f"{file}: param {name!r}"
    if not re.match(PARAM_NAME_PATTERN, name):
        raise WorkflowError(f"{where}: name must match {PARAM_NAME_PATTERN}", file=file, param=name)
    if not isinstance(raw, dict):
        raise WorkflowError(f"{where} must be an object", file=file, param=name)
    if raw.get("type") not in PARAM_TYPES:
        raise WorkflowError(
            f"{where}: unknown type {raw.get('type')!r}; one of {', '.join(PARAM_TYPES)}",
            file=file,
            param=name,
        )
    try:
        return ParamSpec.model_validate(raw)
    except ValidationError as exc:
        raise WorkflowError(f"{where}: {_explain(exc)}", file=file, param=name) from None


def _explain(exc: ValidationError) -> str:
    parts = []
    for error in exc.errors(include_url=False):
        loc = ".".join(str(p) for p in error["loc"])
        msg = str(error["msg"]).removeprefix("Value error, ")
        parts.append(f"{loc}: {msg}" if loc else msg)
    return "; ".join(parts)


def _check_bindings(
    params_file: str, api_file: str, graph: dict[str, Any], params: dict[str, ParamSpec]
) -> None:
    by_title = titles(graph)
    for name, spec in params.items():
        for binding in spec.bind:
            where = f"{params_file}: param {name!r} binds node {binding.node!r}"
            ids = by_title.get(binding.node, [])
            if not ids:
                raise WorkflowError(
                    f"{where}, but no node in {api_file} has that _meta.title",
                    file=params_file,
                    node=binding.node,
                    param=name,
                )
            if len(ids) > 1:
                raise WorkflowError(
                    f"{where}, but {api_file} has {len(ids)} nodes with that title "
                    f"(ids {', '.join(ids)}); titles of bound nodes must be unique",
                    file=params_file,
                    node=binding.node,
                    param=name,
                )
            node = graph[ids[0]]
            inputs = node.get("inputs", {})
            extra = {"file": params_file, "node": binding.node, "param": name}
            if binding.input not in inputs:
                raise WorkflowError(
                    f"{where} ({node['class_type']}, id {ids[0]}) input {binding.input!r}, "
                    f"which that node does not have; it has {sorted(inputs)}",
                    input=binding.input,
                    **extra,
                )
            if is_link(inputs[binding.input]):
                raise WorkflowError(
                    f"{where} input {binding.input!r}, which is a link from another node; "
                    "binding it would cut the graph",
                    input=binding.input,
                    **extra,
                )


def _check_ui(ui: dict[str, Any], files: Files, graph: dict[str, Any]) -> list[str]:
    nodes = ui.get("nodes")
    if not isinstance(nodes, list):
        return [f"{files.ui}: no 'nodes' list; it does not look like a UI workflow"]
    ui_types = {
        str(n.get("id")): n.get("type")
        for n in nodes
        if isinstance(n, dict) and n.get("type") not in UI_ONLY_TYPES
    }
    for node_id, node in graph.items():
        if ui_types.get(node_id) != node["class_type"]:
            return [
                f"{files.ui}: does not match {files.api} at node {node_id!r} "
                f"({node['class_type']}); re-export both from the same workflow"
            ]
    return []
