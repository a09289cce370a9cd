"""The pure core: param validation, random-seed resolution, rendering by node title."""

from __future__ import annotations

import copy
import random
from pathlib import Path
from typing import Any

import pytest

from comfyfleet.errors import ParamError
from comfyfleet.templates.builtin import builtin_folder
from comfyfleet.templates.loader import load_folder
from comfyfleet.templates.model import MAX_RANDOM_SEED, Template
from comfyfleet.templates.render import render, resolve_params, validate_params
from tests.templates.conftest import read_json, write_json


@pytest.fixture(scope="module")
def shipped() -> dict[str, Template]:
    return load_folder(builtin_folder()).templates


def node_titled(graph: dict[str, Any], title: str) -> dict[str, Any]:
    (node,) = [n for n in graph.values() if n.get("_meta", {}).get("title") == title]
    return node


@pytest.mark.parametrize(
    ("workflow", "params", "fragments"),
    [
        pytest.param("txt2img", {"promt": "x"}, ["'promt'", "prompt"], id="unknown"),
        pytest.param("txt2img", {"steps": "20"}, ["'steps'", "integer"], id="string-for-int"),
        pytest.param("txt2img", {"steps": 20.5}, ["'steps'", "integer"], id="float-for-int"),
        pytest.param("txt2img", {"steps": True}, ["'steps'", "integer"], id="bool-for-int"),
        pytest.param("txt2img", {"steps": 0}, ["'steps'", "at least 1"], id="below-minimum"),
        pytest.param("txt2img", {"steps": 151}, ["'steps'", "at most 150"], id="above-maximum"),
        pytest.param("txt2img", {"cfg": 30.5}, ["'cfg'", "at most 30"], id="number-above"),
        pytest.param("txt2img", {"width": 500}, ["'width'", "multiple of 8"], id="not-multiple"),
        pytest.param("txt2img", {"prompt": 7}, ["'prompt'", "string"], id="int-for-string"),
        pytest.param("txt2img", {"prompt": "x" * 8001}, ["'prompt'", "8000"], id="too-long"),
        pytest.param("txt2img", {"sampler": "eulr"}, ["'sampler'", "one of"], id="not-a-choice"),
        pytest.param("txt2img", {"seed": -2}, ["'seed'", "random"], id="bad-seed"),
        pytest.param("txt2img", {"seed": 2**64}, ["'seed'"], id="seed-too-big"),
        pytest.param("invert", {}, ["'image'", "required"], id="missing-required"),
        pytest.param("invert", {"image": "../../etc/passwd"}, ["'image'", ".."], id="traversal"),
        pytest.param("invert", {"image": "/abs.png"}, ["'image'"], id="absolute-image"),
    ],
)
def test_bad_params_name_the_param(
    shipped: dict[str, Template], workflow: str, params: dict[str, Any], fragments: list[str]
) -> None:
    with pytest.raises(ParamError) as caught:
        validate_params(shipped[workflow], params)
    for fragment in fragments:
        assert fragment in caught.value.detail
    assert caught.value.problem()["param"] in caught.value.detail
    assert caught.value.status == 422


def test_validate_fills_defaults_and_leaves_seed_random(shipped: dict[str, Template]) -> None:
    values = validate_params(shipped["txt2img"], {"prompt": "a cat", "cfg": 5})
    assert values["prompt"] == "a cat"
    assert values["steps"] == 20
    assert values["cfg"] == 5.0
    assert isinstance(values["cfg"], float)
    assert values["seed"] == -1


def test_resolve_params_draws_seeds_from_the_given_rng(shipped: dict[str, Template]) -> None:
    template = shipped["txt2img"]
    values = validate_params(template, {})
    first = resolve_params(template, values, random.Random(7))
    again = resolve_params(template, values, random.Random(7))
    assert first == again
    assert 0 <= first["seed"] <= MAX_RANDOM_SEED
    assert values["seed"] == -1  # input not mutated
    fixed = resolve_params(template, {**values, "seed": 42}, random.Random(7))
    assert fixed["seed"] == 42
    assert resolve_params(template, {}, random.Random(7))["seed"] == first["seed"]


def test_render_binds_by_title_and_is_pure(shipped: dict[str, Template]) -> None:
    template = shipped["txt2img"]
    before = copy.deepcopy(template.graph)
    params = {"prompt": "a cat", "seed": 123, "width": 768, "sampler": "dpmpp_2m", "cfg": 4}
    graph = render(template, params)
    assert node_titled(graph, "Positive Prompt")["inputs"]["text"] == "a cat"
    sampler = node_titled(graph, "KSampler")["inputs"]
    assert (sampler["seed"], sampler["sampler_name"], sampler["cfg"]) == (123, "dpmpp_2m", 4.0)
    assert sampler["model"] == ["4", 0]  # links untouched
    assert node_titled(graph, "Empty Latent")["inputs"]["width"] == 768
    assert template.graph == before
    graph["3"]["inputs"]["steps"] = 99
    assert template.graph == before
    assert render(template, params) == render(template, params)


def test_render_refuses_an_unresolved_seed(shipped: dict[str, Template]) -> None:
    with pytest.raises(ParamError, match="resolve_params"):
        render(shipped["txt2img"], {})


def test_optional_param_without_default_keeps_graph_value(workflows_copy: Path) -> None:
    path = workflows_copy / "solid.params.json"
    declaration = read_json(path)
    del declaration["params"]["color"]["default"]
    write_json(path, declaration)
    template = load_folder(workflows_copy).templates["solid"]
    assert "color" not in validate_params(template, {})
    assert node_titled(render(template, {}), "Solid Color")["inputs"]["color"] == 16711680
    assert node_titled(render(template, {"color": 7}), "Solid Color")["inputs"]["color"] == 7


def test_renumbered_node_ids_do_not_break_bindings(workflows_copy: Path) -> None:
    path = workflows_copy / "txt2img-api.json"
    graph = read_json(path)
    renumber = {old: str(100 + i) for i, old in enumerate(reversed(list(graph)))}
    moved = {}
    for old, node in graph.items():
        for name, value in node["inputs"].items():
            if isinstance(value, list):
                node["inputs"][name] = [renumber[value[0]], value[1]]
        moved[renumber[old]] = node
    write_json(path, moved)
    loaded = load_folder(workflows_copy)
    assert any("txt2img.json" in w for w in loaded.warnings)  # UI no longer matches ids
    graph = render(loaded.templates["txt2img"], {"prompt": "renumbered", "seed": 5, "steps": 9})
    assert set(graph) == set(moved)
    assert node_titled(graph, "Positive Prompt")["inputs"]["text"] == "renumbered"
    assert node_titled(graph, "KSampler")["inputs"]["steps"] == 9
    assert node_titled(graph, "KSampler")["inputs"]["positive"][0] == renumber["6"]


def test_one_param_may_bind_several_inputs(workflows_copy: Path) -> None:
    path = workflows_copy / "mask-composite.params.json"
    declaration = read_json(path)
    declaration["params"]["x"]["bind"].append({"node": "Composite", "input": "y"})
    del declaration["params"]["y"]
    write_json(path, declaration)
    template = load_folder(workflows_copy).templates["mask-composite"]
    inputs = node_titled(render(template, {"x": 10}), "Composite")["inputs"]
    assert (inputs["x"], inputs["y"]) == (10, 10)


def test_params_schema_is_typed(shipped: dict[str, Template]) -> None:
    schema = shipped["txt2img"].params_schema()
    assert schema["type"] == "object"
    assert schema["additionalProperties"] is False
    props = schema["properties"]
    assert props["steps"] == {
        "description": "Sampling steps.",
        "type": "integer",
        "minimum": 1,
        "maximum": 150,
        "default": 20,
    }
    assert props["width"]["multipleOf"] == 8
    assert "euler" in props["sampler"]["enum"]
    assert props["seed"]["default"] == -1
    assert shipped["invert"].params_schema()["required"] == ["image"]
    described = shipped["invert"].describe()
    assert described["graph"] == shipped["invert"].graph
    assert described["version"] == shipped["invert"].version
