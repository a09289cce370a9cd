"""The shapes of a workflow template: parameter specs, bindings, the template itself. Pure.

A template is what `NAME-api.json` + `NAME.params.json` (+ the optional UI `NAME.json`)
become once loaded; it is stored in Redis as JSON and read back with `Template.model_validate`.
"""

from __future__ import annotations

import hashlib
from typing import Any, Literal

import orjson
from pydantic import BaseModel, ConfigDict, Field, model_validator

ParamType = Literal["string", "integer", "number", "boolean", "enum", "image", "seed"]
PARAM_TYPES: tuple[str, ...] = ("string", "integer", "number", "boolean", "enum", "image", "seed")

# -1 asks for a random seed at submit time (ComfyUI's own seeds are 0..2**64-1).
RANDOM_SEED = -1
MAX_SEED = 2**64 - 1
# Random seeds stay below 2**53 so JSON readers that use doubles (browsers, the ComfyUI
# frontend) show the exact seed that ran.
MAX_RANDOM_SEED = 2**53 - 1
MAX_IMAGE_NAME = 255
PARAM_NAME_PATTERN = r"^[A-Za-z_][A-Za-z0-9_]{0,63}$"
WORKFLOW_NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_-]{0,127}$"
VERSION_LENGTH = 12


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Binding(_Frozen):
    """One node input a parameter writes to; the node is found by its `_meta.title`."""

    node: str = Field(min_length=1)
    input: str = Field(min_length=1)


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


class ParamSpec(_Frozen):
    """One named, typed parameter. `minimum`/`maximum`/`multiple_of` apply to integer and
    number params, `max_length` to strings and image names, `choices` to enums. A missing
    default on an optional param keeps whatever value the graph already holds."""

    type: ParamType
    description: str = ""
    default: Any = None
    required: bool = False
    minimum: float | None = None
    maximum: float | None = None
    multiple_of: int | None = Field(default=None, ge=1)
    max_length: int | None = Field(default=None, ge=1)
    choices: tuple[Any, ...] | None = None
    bind: tuple[Binding, ...] = Field(min_length=1)

    @model_validator(mode="after")
    def _consistent(self) -> ParamSpec:
        numeric = self.type in ("integer", "number")
        if not numeric and (self.minimum, self.maximum, self.multiple_of) != (None, None, None):
            raise ValueError(f"minimum/maximum/multiple_of only apply to numbers, not {self.type}")
        if self.max_length is not None and self.type not in ("string", "image"):
            raise ValueError(f"max_length only applies to strings, not {self.type}")
        if self.type == "enum":
            if not self.choices:
                raise ValueError("an enum needs a non-empty 'choices' list")
        elif self.choices is not None:
            raise ValueError(f"choices only apply to enums, not {self.type}")
        if self.minimum is not None and self.maximum is not None and self.minimum > self.maximum:
            raise ValueError(f"minimum {self.minimum} is above maximum {self.maximum}")
        if self.required and self.default is not None:
            raise ValueError("a required param takes no default")
        if self.default is not None:
            problem = self.check(self.default)
            if problem:
                raise ValueError(f"default {self.default!r}: {problem}")
        return self

    def check(self, value: Any) -> str | None:
        """Why `value` is not acceptable for this param, or None when it is."""
        match self.type:
            case "string" | "image":
                return self._check_string(value)
            case "integer":
                return self._check_number(value) if _is_int(value) else "must be an integer"
            case "number":
                return self._check_number(value) if _is_number(value) else "must be a number"
            case "boolean":
                return None if isinstance(value, bool) else "must be true or false"
            case "enum":
                assert self.choices is not None
                ok = any(type(value) is type(c) and value == c for c in self.choices)
                return None if ok else f"must be one of {list(self.choices)}"
            case "seed":
                if not _is_int(value) or not (value == RANDOM_SEED or 0 <= value <= MAX_SEED):
                    return f"must be an integer from 0 to {MAX_SEED}, or {RANDOM_SEED} for random"
                return None
        raise AssertionError(self.type)

    def _check_string(self, value: Any) -> str | None:
        if not isinstance(value, str):
            return "must be a string"
        limit = self.max_length
        if self.type == "image":
            limit = min(limit or MAX_IMAGE_NAME, MAX_IMAGE_NAME)
            if not value or value.startswith(("/", "\\")) or ".." in value.split("/"):
                return "must name an uploaded input file (no absolute path, no '..')"
        if limit is not None and len(value) > limit:
            return f"must be at most {limit} characters"
        return None

    def _check_number(self, value: float) -> str | None:
        if self.minimum is not None and value < self.minimum:
            return f"must be at least {_num(self.minimum)}"
        if self.maximum is not None and value > self.maximum:
            return f"must be at most {_num(self.maximum)}"
        if self.multiple_of is not None and value % self.multiple_of != 0:
            return f"must be a multiple of {self.multiple_of}"
        return None

    def json_schema(self) -> dict[str, Any]:
        """This param as a JSON Schema fragment (for the per-workflow OpenAPI schema)."""
        schema: dict[str, Any] = {"description": self.description} if self.description else {}
        match self.type:
            case "string" | "image":
                schema["type"] = "string"
                if self.type == "image":
                    schema["format"] = "comfyui-input-file"
                limit = self.max_length or (MAX_IMAGE_NAME if self.type == "image" else None)
                if limit:
                    schema["maxLength"] = limit
            case "integer" | "number":
                schema["type"] = self.type
                for key, bound in (("minimum", self.minimum), ("maximum", self.maximum)):
                    if bound is not None:
                        schema[key] = _num(bound)
                if self.multiple_of is not None:
                    schema["multipleOf"] = self.multiple_of
            case "boolean":
                schema["type"] = "boolean"
            case "enum":
                schema["enum"] = list(self.choices or ())
            case "seed":
                schema.update(type="integer", minimum=RANDOM_SEED, maximum=MAX_SEED)
        if self.default is not None:
            schema["default"] = self.default
        elif self.type == "seed":
            schema["default"] = RANDOM_SEED
        return schema


def _num(value: float) -> float | int:
    return int(value) if float(value).is_integer() else value


class Template(_Frozen):
    """A loaded, validated workflow. `graph` is the API format, `ui` the optional UI format,
    `declaration` the params file as written (it is hashed into `version`)."""

    name: str = Field(pattern=WORKFLOW_NAME_PATTERN)
    version: str = Field(min_length=VERSION_LENGTH, max_length=VERSION_LENGTH)
    description: str = ""
    params: dict[str, ParamSpec]
    graph: dict[str, Any]
    ui: dict[str, Any] | None = None
    declaration: dict[str, Any] = Field(default_factory=dict)

    def params_schema(self) -> dict[str, Any]:
        """The params object of a job request for this workflow, as JSON Schema."""
        return {
            "type": "object",
            "title": f"{self.name} params",
            "description": self.description,
            "additionalProperties": False,
            "properties": {name: spec.json_schema() for name, spec in self.params.items()},
            "required": [name for name, spec in self.params.items() if spec.required],
        }

    def summary(self) -> dict[str, Any]:
        """What a listing shows: name, version, description, and each param's schema."""
        return {
            "name": self.name,
            "version": self.version,
            "description": self.description,
            "params": {name: spec.json_schema() for name, spec in self.params.items()},
        }

    def describe(self) -> dict[str, Any]:
        """The summary plus the params schema, the API graph and the UI graph (may be None)."""
        return {
            **self.summary(),
            "params_schema": self.params_schema(),
            "graph": self.graph,
            "ui": self.ui,
        }


def content_version(graph: dict[str, Any], declaration: dict[str, Any]) -> str:
    """The first 12 hex chars of sha256 over the canonical JSON of graph + declaration.

    The UI file is left out on purpose: it changes on every UI save (positions, zoom) without
    changing what runs."""
    canonical = orjson.dumps({"graph": graph, "params": declaration}, option=orjson.OPT_SORT_KEYS)
    return hashlib.sha256(canonical).hexdigest()[:VERSION_LENGTH]


def node_title(node: dict[str, Any]) -> str | None:
    meta = node.get("_meta")
    title = meta.get("title") if isinstance(meta, dict) else None
    return title if isinstance(title, str) and title else None


def titles(graph: dict[str, Any]) -> dict[str, list[str]]:
    """Node title -> the ids of the nodes carrying it (more than one is ambiguous)."""
    out: dict[str, list[str]] = {}
    for node_id, node in graph.items():
        title = node_title(node)
        if title is not None:
            out.setdefault(title, []).append(node_id)
    return out
