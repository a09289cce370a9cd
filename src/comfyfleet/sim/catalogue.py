"""Node classes as `/object_info` describes them, and the catalogue that fills their
file combos (checkpoints, LoRAs, LoadImage's uploads) from the current inventory. The specs
themselves live in `nodespecs`."""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Any

MAX_RESOLUTION = 16384
UPSCALE_METHODS = ["nearest-exact", "bilinear", "area", "bicubic", "lanczos"]
SAMPLERS = [
    "euler", "euler_cfg_pp", "euler_ancestral", "euler_ancestral_cfg_pp", "heun", "heunpp2",
    "dpm_2", "dpm_2_ancestral", "lms", "dpm_fast", "dpm_adaptive", "dpmpp_2s_ancestral",
    "dpmpp_2s_ancestral_cfg_pp", "dpmpp_sde", "dpmpp_sde_gpu", "dpmpp_2m", "dpmpp_2m_cfg_pp",
    "dpmpp_2m_sde", "dpmpp_2m_sde_gpu", "dpmpp_2m_sde_heun", "dpmpp_2m_sde_heun_gpu",
    "dpmpp_3m_sde", "dpmpp_3m_sde_gpu", "ddpm", "lcm", "ipndm", "ipndm_v", "deis",
    "res_multistep", "res_multistep_cfg_pp", "res_multistep_ancestral",
    "res_multistep_ancestral_cfg_pp", "gradient_estimation", "gradient_estimation_cfg_pp",
    "er_sde", "seeds_2", "seeds_3", "sa_solver", "sa_solver_pece", "ddim", "uni_pc",
    "uni_pc_bh2",
]  # fmt: skip
SCHEDULERS = [
    "simple", "sgm_uniform", "karras", "exponential", "ddim_uniform", "beta", "normal",
    "linear_quadratic", "kl_optimal",
]  # fmt: skip
DEFAULT_CHECKPOINT = "v1-5-pruned-emaonly.safetensors"
SAVE_HIDDEN = {"prompt": "PROMPT", "extra_pnginfo": "EXTRA_PNGINFO"}
PREFIX_TOOLTIP = (
    "The prefix for the file to save. This may include formatting information such as "
    "%date:yyyy-MM-dd% or %Empty Latent Image.width% to include values from nodes."
)
SAVE_DESCRIPTION = "Saves the input images to your ComfyUI output directory."


@dataclass(frozen=True)
class NodeClass:
    """One node class: its `/object_info` entry plus what validation and execution need."""

    name: str
    info: dict[str, Any]
    # Combo inputs whose options are files: input name -> model folder ("@input": uploads).
    file_combos: dict[str, str] = field(default_factory=dict)
    # Inputs checked by the class's own VALIDATE_INPUTS (skips min/max/combo checks).
    custom_validated: tuple[str, ...] = ()
    # IS_CHANGED policy for the output cache: "" (never), "always", "input_file".
    is_changed: str = ""
    # The class takes a hidden UNIQUE_ID, so its cache key includes the node id.
    unique_id: bool = False

    @property
    def output_node(self) -> bool:
        return bool(self.info["output_node"])

    @property
    def return_types(self) -> list[str]:
        types: list[str] = self.info["output"]
        return types


def v1_info(
    name: str,
    required: dict[str, list[Any]],
    output: list[str],
    *,
    category: str,
    module: str = "nodes",
    display: str | None = None,
    description: str = "",
    optional: dict[str, list[Any]] | None = None,
    hidden: dict[str, str] | None = None,
    output_name: list[str] | None = None,
    output_node: bool = False,
    tooltips: list[str] | None = None,
) -> dict[str, Any]:
    """An entry shaped like ComfyUI's node_info() for classic (V1) node classes."""
    inputs: dict[str, Any] = {"required": required}
    if optional:
        inputs["optional"] = optional
    if hidden:
        inputs["hidden"] = hidden
    info: dict[str, Any] = {
        "input": inputs,
        "input_order": {key: list(value) for key, value in inputs.items()},
        "output": output,
        "output_is_list": [False] * len(output),
        "output_name": output_name or list(output),
        "name": name,
        "display_name": display or name,
        "description": description,
        "python_module": module,
        "category": category,
        "output_node": output_node,
    }
    if tooltips is not None:
        info["output_tooltips"] = tooltips
    return info


def v3_info(
    name: str, required: dict[str, list[Any]], category: str, module: str
) -> dict[str, Any]:
    """An entry shaped like GET_NODE_INFO_V1() of the newer io.ComfyNode classes."""
    return {
        "input": {"required": required},
        "input_order": {"required": list(required)},
        "output": ["IMAGE"],
        "output_is_list": [False],
        "output_name": ["IMAGE"],
        "output_tooltips": [None],
        "name": name,
        "display_name": None,
        "description": "",
        "python_module": module,
        "category": category,
        "output_node": False,
        "deprecated": False,
        "experimental": False,
        "api_node": False,
    }


def int_input(default: int, lo: int, hi: int, step: int | None = 1, **extra: Any) -> list[Any]:
    spec: dict[str, Any] = {"default": default, "min": lo, "max": hi}
    if step is not None:
        spec["step"] = step
    spec.update(extra)
    return ["INT", spec]


def float_input(default: float, lo: float, hi: float, step: float, **extra: Any) -> list[Any]:
    return ["FLOAT", {"default": default, "min": lo, "max": hi, "step": step, **extra}]


@dataclass(frozen=True)
class Catalogue:
    """Node classes plus the file lists that fill their combos right now."""

    classes: dict[str, NodeClass]
    models: dict[str, tuple[str, ...]]
    input_files: tuple[str, ...]

    def get(self, name: str) -> NodeClass | None:
        return self.classes.get(name)

    def input_types(self, node: NodeClass) -> dict[str, dict[str, list[Any]]]:
        """The node's `input` section with file combos filled in (a fresh copy)."""
        inputs: dict[str, dict[str, list[Any]]] = copy.deepcopy(node.info["input"])
        for name, folder in node.file_combos.items():
            files = self.input_files if folder == "@input" else self.models.get(folder, ())
            inputs["required"][name][0] = sorted(files)
        return inputs

    def info(self, name: str) -> dict[str, Any]:
        node = self.classes[name]
        info = dict(node.info)
        info["input"] = self.input_types(node)
        return info

    def object_info(self) -> dict[str, Any]:
        return {name: self.info(name) for name in self.classes}


def inventory(models: dict[str, tuple[str, ...]]) -> dict[str, tuple[str, ...]]:
    """The configured model inventory; a default SD1.5 checkpoint when none is configured."""
    out = dict(models)
    if not out.get("checkpoints"):
        out["checkpoints"] = (DEFAULT_CHECKPOINT,)
    return out
