"""File names in raw graphs: no input may reach outside ComfyUI's own folders. Pure.

ComfyUI joins a file input's value onto its input/models/output folder, so an absolute
path (`/etc/x.png`, `C:\\x`, `\\\\host\\share`) or a `..` step reads or writes anywhere on the
GPU box: `LoadImage {"image": "/some/absolute/path.png"}` returned that file's pixels. Every
graph is checked here, once, for every input that names a file -- not only LoadImage's: a
raw graph whole, a rendered workflow in the values its params wrote (a `string` param bound
to `ckpt_name` is a file name too).

Which inputs name a file is what `/object_info` says: COMBO inputs (a list of choices --
files in a folder, for loaders) and inputs flagged as uploads (`image_upload`...). The
balancer does not talk to ComfyUI, so at submit it applies a conservative rule that covers
them (tests hold it against the recorded ComfyUI's object_info; `file_inputs_of` derives
the exact set from an object_info for callers that have one):

- an input *named* like a file (`image`, `ckpt_name`, `filename_prefix`, `*_path`, ... see
  FILE_INPUT_NAME) must be a relative name: no absolute path, drive letter, UNC path or `..`
  step, and no NUL, CR/LF or other control character;
- *any* other single-line string may be a custom node's file input, so it gets the same
  path checks (absolute, drive, UNC, `..`), but not the control-character one: prompts
  are free text. A multi-line string cannot name a file and is left alone;
- NUL is refused in every string.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from comfyfleet.models.graph import GraphInvalid

# Input names that mean a file in ComfyUI and common custom nodes.
FILE_INPUT_NAME = re.compile(
    r"(?i)^(?:image|images|mask|video|audio|file|files|filename|filepath|path|dir|directory|"
    r"folder|model|ckpt|checkpoint|lora|vae|clip|unet|font)\d*$"
    r"|_(?:name|path|file|filename|dir|directory|folder|prefix)\d*$"
    r"|^(?:file|filename|model|image|video|audio|mask)_"
)
_ABSOLUTE = re.compile(r"^(?:[/\\~]|[A-Za-z]:)")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
# object_info flags that make an input an upload (a file in input/).
UPLOAD_FLAGS = ("image_upload", "video_upload", "audio_upload", "upload")


def names_a_file(input_name: str) -> bool:
    return FILE_INPUT_NAME.search(input_name) is not None


def path_problem(value: str) -> str | None:
    """Why `value`, used as a file name, would leave its folder; None when it would not."""
    if _ABSOLUTE.match(value):
        return "is an absolute path (names must be relative to ComfyUI's folders)"
    if ".." in re.split(r"[/\\]", value):
        return "contains a '..' step"
    return None


def file_name_problem(value: str, *, file_input: bool) -> str | None:
    """Why `value` is refused in an input (see the module docstring); None: accepted."""
    if "\x00" in value:
        return "contains a NUL character"
    if file_input:
        if _CONTROL.search(value):
            return "contains a control character (CR, LF, tab...), which no file name has"
        return path_problem(value)
    return None if "\n" in value or "\r" in value else path_problem(value)


def check_file_names(
    graph: Mapping[str, Any],
    file_inputs: Mapping[str, frozenset[str]] | None = None,
    *,
    unchanged_from: Mapping[str, Any] | None = None,
) -> None:
    """GraphInvalid (422) naming the first node input whose string value is refused.
    `file_inputs`: class type -> its file inputs, from an object_info (`file_inputs_of`);
    added to the name rule, never instead of it. `unchanged_from`: a published template
    the graph was rendered from; only the values that differ from it (a job's params) are
    checked, the template's own were accepted when it was published."""
    known = file_inputs or {}
    base = unchanged_from or {}
    for node_id, node in graph.items():
        class_type = str(node.get("class_type", ""))
        was = (base.get(node_id) or {}).get("inputs") or {}
        for name, value in (node.get("inputs") or {}).items():
            if not isinstance(value, str) or was.get(name) == value:
                continue
            file_input = names_a_file(name) or name in known.get(class_type, frozenset())
            problem = file_name_problem(value, file_input=file_input)
            if problem is not None:
                raise GraphInvalid(
                    f"node {node_id!r} ({class_type}) input {name!r} {problem}: {value[:60]!r}",
                    node=node_id,
                    input=name,
                )


def _is_file_spec(spec: Any) -> bool:
    """An object_info input spec `[type, options?]` that names a file: an upload, or a
    COMBO whose choices are files (a name with an extension or a folder), or none yet (an
    empty model folder; enumerations are never empty)."""
    if not isinstance(spec, list) or not spec:
        return False
    kind, options = spec[0], spec[1] if len(spec) > 1 and isinstance(spec[1], dict) else {}
    if any(options.get(flag) for flag in UPLOAD_FLAGS):
        return True
    choices = (
        kind if isinstance(kind, list) else options.get("options") if kind == "COMBO" else None
    )
    if not isinstance(choices, list):
        return False
    return not choices or any(isinstance(c, str) and ("." in c or "/" in c) for c in choices)


def file_inputs_of(object_info: Mapping[str, Any]) -> dict[str, frozenset[str]]:
    """Class type -> the inputs its object_info entry marks as naming a file (loaders' file
    lists, uploads)."""
    found: dict[str, frozenset[str]] = {}
    for class_type, info in object_info.items():
        inputs = info.get("input", {}) if isinstance(info, dict) else {}
        names = {
            name
            for section in ("required", "optional")
            for name, spec in (inputs.get(section) or {}).items()
            if _is_file_spec(spec)
        }
        if names:
            found[class_type] = frozenset(names)
    return found
