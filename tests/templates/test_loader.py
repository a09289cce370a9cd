"""Loading and validating workflow folders: the shipped one passes, broken copies fail with
errors that name the file and the node."""

from __future__ import annotations

import hashlib
import json
import re
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
import pytest

from comfyfleet.errors import WorkflowError
from comfyfleet.templates.builtin import builtin_folder
from comfyfleet.templates.loader import load_folder, load_folders
from tests.support.traces import WORKFLOWS as RECORDED
from tests.templates.conftest import read_json

Edit = Callable[[str, Callable[[Any], None]], Path]

SHIPPED = {"txt2img", "solid", "two-outputs", "invert", "blur", "mask-composite"}
MODEL_FREE = SHIPPED - {"txt2img"}


def test_shipped_folder_loads_without_warnings() -> None:
    loaded = load_folder(builtin_folder())
    assert set(loaded.templates) == SHIPPED
    assert loaded.warnings == []
    for template in loaded:
        assert re.fullmatch(r"[0-9a-f]{12}", template.version)
        assert template.description
        assert template.params
        assert template.ui is not None
        assert template.ui["nodes"]


def test_txt2img_declares_the_standard_params() -> None:
    template = load_folder(builtin_folder()).templates["txt2img"]
    assert {"prompt", "negative", "seed", "steps", "cfg", "width", "height", "checkpoint"} <= set(
        template.params
    )
    classes = {node["class_type"] for node in template.graph.values()}
    assert classes == {
        "CheckpointLoaderSimple",
        "CLIPTextEncode",
        "EmptyLatentImage",
        "KSampler",
        "VAEDecode",
        "SaveImage",
    }
    assert template.params["checkpoint"].default == "v1-5-pruned-emaonly.safetensors"
    assert template.params["seed"].default == -1
    assert (template.params["steps"].minimum, template.params["steps"].maximum) == (1, 150)


def test_model_free_workflows_use_only_what_a_real_comfyui_accepted() -> None:
    """Every (class_type, input names) of the model-free graphs appears in a recorded,
    accepted workflow, so a real ComfyUI runs them without models."""
    accepted = {
        (node["class_type"], frozenset(node["inputs"]))
        for path in RECORDED.glob("[abcdj]_*.json")
        for node in read_json(path).values()
    }
    for template in load_folder(builtin_folder()):
        if template.name in MODEL_FREE:
            for node in template.graph.values():
                assert (node["class_type"], frozenset(node["inputs"])) in accepted, template.name


def _set_bind(param: str, node: str, input_name: str) -> Callable[[Any], None]:
    def change(data: Any) -> None:
        data["params"][param]["bind"] = [{"node": node, "input": input_name}]

    return change


def _set(path: tuple[str | int, ...], value: Any) -> Callable[[Any], None]:
    def change(data: Any) -> None:
        for key in path[:-1]:
            data = data[key]
        data[path[-1]] = value

    return change


def _delete(path: tuple[str | int, ...]) -> Callable[[Any], None]:
    def change(data: Any) -> None:
        for key in path[:-1]:
            data = data[key]
        del data[path[-1]]

    return change


BROKEN = [
    pytest.param(
        "solid.params.json",
        _set_bind("width", "No Such Node", "width"),
        ["solid.params.json", "'No Such Node'", "no node"],
        id="binding-to-missing-title",
    ),
    pytest.param(
        "solid-api.json",
        _set(("2", "_meta", "title"), "Solid Color"),
        ["solid.params.json", "'Solid Color'", "2 nodes", "ids 1, 2"],
        id="bound-title-used-twice",
    ),
    pytest.param(
        "solid.params.json",
        _set_bind("width", "Solid Color", "colour"),
        ["solid.params.json", "'Solid Color'", "'colour'", "does not have"],
        id="binding-to-missing-input",
    ),
    pytest.param(
        "solid.params.json",
        _set_bind("width", "Save Image", "images"),
        ["solid.params.json", "'Save Image'", "'images'", "link"],
        id="binding-to-a-linked-input",
    ),
    pytest.param(
        "solid-api.json",
        _set(("2", "inputs", "images"), ["9", 0]),
        ["solid-api.json", "node '2'", "missing node '9'"],
        id="broken-link",
    ),
    pytest.param(
        "solid-api.json",
        _delete(("1", "class_type")),
        ["solid-api.json", "node '1'", "no class_type"],
        id="node-without-class-type",
    ),
    pytest.param(
        "solid.params.json",
        _set(("params", "width", "type"), "float"),
        ["solid.params.json", "'width'", "unknown type 'float'"],
        id="unknown-param-type",
    ),
    pytest.param(
        "solid.params.json",
        _set(("params", "width", "default"), 100_000),
        ["solid.params.json", "'width'", "default 100000", "at most 4096"],
        id="default-above-maximum",
    ),
    pytest.param(
        "solid.params.json",
        _set(("params", "width", "default"), "wide"),
        ["solid.params.json", "'width'", "must be an integer"],
        id="default-of-wrong-type",
    ),
    pytest.param(
        "txt2img.params.json",
        _set(("params", "width", "default"), 513),
        ["txt2img.params.json", "'width'", "multiple of 8"],
        id="default-not-a-multiple",
    ),
    pytest.param(
        "txt2img.params.json",
        _delete(("params", "sampler", "choices")),
        ["txt2img.params.json", "'sampler'", "choices"],
        id="enum-without-choices",
    ),
    pytest.param(
        "solid.params.json",
        _set(("params", "width", "bind"), []),
        ["solid.params.json", "'width'", "bind"],
        id="param-bound-nowhere",
    ),
]


@pytest.mark.parametrize(("file", "change", "expected"), BROKEN)
def test_broken_workflow_is_refused_naming_file_and_node(
    workflows_copy: Path,
    edit_json: Edit,
    file: str,
    change: Callable[[Any], None],
    expected: list[str],
) -> None:
    edit_json(file, change)
    with pytest.raises(WorkflowError) as caught:
        load_folder(workflows_copy)
    for fragment in expected:
        assert fragment in caught.value.detail
    assert caught.value.extra["file"] == expected[0]


def test_error_carries_node_for_problem_document(workflows_copy: Path, edit_json: Edit) -> None:
    edit_json("solid.params.json", _set_bind("color", "Nowhere", "color"))
    with pytest.raises(WorkflowError) as caught:
        load_folder(workflows_copy)
    problem = caught.value.problem()
    assert problem["node"] == "Nowhere"
    assert problem["param"] == "color"
    assert problem["status"] == 422


def test_invalid_json_names_the_file(workflows_copy: Path) -> None:
    (workflows_copy / "blur-api.json").write_text("{not json")
    with pytest.raises(WorkflowError, match=r"blur-api\.json: not valid JSON"):
        load_folder(workflows_copy)


def test_params_file_without_api_file_is_an_error(workflows_copy: Path) -> None:
    (workflows_copy / "blur-api.json").unlink()
    with pytest.raises(WorkflowError, match=r"blur\.params\.json: no blur-api\.json"):
        load_folder(workflows_copy)


def test_missing_ui_file_is_a_warning(workflows_copy: Path) -> None:
    (workflows_copy / "solid.json").unlink()
    loaded = load_folder(workflows_copy)
    assert loaded.templates["solid"].ui is None
    assert any("solid.json" in w and "no UI file" in w for w in loaded.warnings)


def test_mismatched_ui_file_is_a_warning_and_is_kept(workflows_copy: Path) -> None:
    shutil.copy(workflows_copy / "blur.json", workflows_copy / "solid.json")
    loaded = load_folder(workflows_copy)
    assert loaded.templates["solid"].ui == read_json(workflows_copy / "blur.json")
    assert any("solid.json" in w and "does not match" in w for w in loaded.warnings)


def test_workflow_without_params_file_runs_as_is(workflows_copy: Path) -> None:
    (workflows_copy / "solid.params.json").unlink()
    template = load_folder(workflows_copy).templates["solid"]
    assert template.params == {}


def test_later_folder_overrides_earlier(workflows_copy: Path, edit_json: Edit) -> None:
    edit_json("solid.params.json", _set(("description",), "mine"))
    for path in workflows_copy.iterdir():
        if not path.name.startswith("solid"):
            path.unlink()
    loaded = load_folders([builtin_folder(), workflows_copy])
    assert loaded.templates["solid"].description == "mine"
    assert any("overrides" in w for w in loaded.warnings)


def test_version_is_a_content_hash(workflows_copy: Path, edit_json: Edit) -> None:
    first = load_folder(workflows_copy).templates["solid"].version
    assert load_folder(workflows_copy).templates["solid"].version == first
    # Formatting and key order are not content.
    api = read_json(workflows_copy / "solid-api.json")
    (workflows_copy / "solid-api.json").write_text(
        json.dumps(dict(reversed(list(api.items()))), indent=7)
    )
    assert load_folder(workflows_copy).templates["solid"].version == first
    # The UI file is not hashed: moving a node in the UI does not make a new version.
    edit_json("solid.json", _set(("nodes", 0, "pos"), [0, 0]))
    assert load_folder(workflows_copy).templates["solid"].version == first
    edit_json("solid.params.json", _set(("params", "width", "default"), 640))
    changed = load_folder(workflows_copy).templates["solid"].version
    assert changed != first
    edit_json("solid.params.json", _set(("params", "width", "default"), 512))
    assert load_folder(workflows_copy).templates["solid"].version == first


def test_version_matches_documented_recipe() -> None:
    folder = builtin_folder()
    graph = read_json(folder / "blur-api.json")
    declaration = read_json(folder / "blur.params.json")
    canonical = orjson.dumps({"graph": graph, "params": declaration}, option=orjson.OPT_SORT_KEYS)
    expected = hashlib.sha256(canonical).hexdigest()[:12]
    assert load_folder(folder).templates["blur"].version == expected
