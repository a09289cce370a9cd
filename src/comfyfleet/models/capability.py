"""Capability routing, the pure part: what a job needs from a node, and whether a node's
inventory has it.

A job's requirement is the node classes its graph uses and the model files its loader
inputs name (a COMBO of files in `/object_info`, not an upload: uploaded inputs travel
with the job). Jobs with equal requirements form one capability class, named by a hash of
the requirement, so the queues hold one class per distinct need, not per job. A node
serves a class when its inventory (`/object_info`) has every class and lists every file
among that input's choices.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import orjson

from comfyfleet.models.file_inputs import UPLOAD_FLAGS
from comfyfleet.models.job import ANY_CAPABILITY

CLASS_ID_LENGTH = 16


@dataclass(frozen=True)
class FileNeed:
    class_type: str
    input: str
    name: str  # the file name the input names (relative to its model folder)


@dataclass(frozen=True)
class Requirement:
    classes: tuple[str, ...] = ()  # sorted node class names
    files: tuple[FileNeed, ...] = ()  # sorted

    @property
    def class_id(self) -> str:
        """The capability class: ANY_CAPABILITY for no requirement, else a content hash."""
        if not self.classes and not self.files:
            return ANY_CAPABILITY
        return hashlib.sha256(self.to_json()).hexdigest()[:CLASS_ID_LENGTH]

    def to_json(self) -> bytes:
        files = [[f.class_type, f.input, f.name] for f in self.files]
        return orjson.dumps({"classes": list(self.classes), "files": files})

    @classmethod
    def from_json(cls, raw: bytes | str) -> Requirement:
        doc = orjson.loads(raw)
        files = tuple(FileNeed(*f) for f in doc.get("files", []))
        return cls(tuple(doc.get("classes", [])), files)


def _choices(spec: Any) -> list[Any] | None:
    """The choices of a COMBO input spec (both forms), or None for another kind."""
    if not isinstance(spec, list) or not spec:
        return None
    if isinstance(spec[0], list):
        return spec[0]
    if spec[0] == "COMBO" and len(spec) > 1 and isinstance(spec[1], dict):
        options = spec[1].get("options")
        return options if isinstance(options, list) else None
    return None


def _input_spec(object_info: Mapping[str, Any], class_type: str, name: str) -> Any:
    inputs = (object_info.get(class_type) or {}).get("input") or {}
    for section in ("required", "optional"):
        specs = inputs.get(section) or {}
        if name in specs:
            return specs[name]
    return None


def _is_model_file_input(spec: Any) -> bool:
    """A loader's file list: a COMBO whose choices are files (or empty: a folder with no
    file yet), not an upload (uploads travel with the job)."""
    choices = _choices(spec)
    if choices is None:
        return False
    options = spec[1] if len(spec) > 1 and isinstance(spec[1], dict) else {}
    if any(options.get(flag) for flag in UPLOAD_FLAGS):
        return False
    return not choices or any(isinstance(c, str) and ("." in c or "/" in c) for c in choices)


def requirement_of(graph: Mapping[str, Any], object_info: Mapping[str, Any] | None) -> Requirement:
    """What `graph` needs. `object_info` (the fleet's union) says which inputs name model
    files; None (no inventory known yet): the node classes only."""
    classes: set[str] = set()
    files: set[FileNeed] = set()
    for node in graph.values():
        if not isinstance(node, Mapping):
            continue
        class_type = str(node.get("class_type", ""))
        classes.add(class_type)
        if object_info is None or class_type not in object_info:
            continue
        for name, value in (node.get("inputs") or {}).items():
            if isinstance(value, str) and _is_model_file_input(
                _input_spec(object_info, class_type, name)
            ):
                files.add(FileNeed(class_type, name, value))
    ordered = sorted(files, key=lambda f: (f.class_type, f.input, f.name))
    return Requirement(tuple(sorted(classes)), tuple(ordered))


def missing(requirement: Requirement, object_info: Mapping[str, Any]) -> Requirement:
    """What of `requirement` an inventory lacks (empty: it covers it)."""
    classes = tuple(c for c in requirement.classes if c not in object_info)
    files = []
    for need in requirement.files:
        choices = _choices(_input_spec(object_info, need.class_type, need.input))
        # A file of a missing class is not listed again: the class says it all.
        if need.class_type in object_info and choices is not None and need.name not in choices:
            files.append(need)
    return Requirement(classes, tuple(files))


def covers(object_info: Mapping[str, Any], requirement: Requirement) -> bool:
    gap = missing(requirement, object_info)
    return not gap.classes and not gap.files
