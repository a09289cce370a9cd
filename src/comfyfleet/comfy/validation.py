"""Graph validation with ComfyUI 0.3.64's exact error bodies (execution.validate_prompt).

Pure, and shared: the stand-in validates with its own catalogue (sim/catalogue.py), the
balancer's native POST /prompt with the fleet's merged /object_info
(balancer/native/catalog.py); both only need what `Catalogue` and `NodeClass` below say.

Two places where ComfyUI iterates a Python `set` (so its order changes per process with
hash randomisation) are made deterministic here: output nodes are validated in reverse
prompt order and a node's inputs in reverse declaration order. Both happen to reproduce
the order seen in the recordings (`outputs_to_execute` ["5", "2"], e4's error order).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

Error = dict[str, Any]
Verdict = tuple[bool, list[Error], str]
CONVERTERS: dict[str, Callable[[Any], Any]] = {
    "INT": int,
    "FLOAT": float,
    "STRING": str,
    "BOOLEAN": bool,
}
SIM_TRACEBACK = ['  File "comfyfleet/comfy/validation.py", in validate_inputs\n']


class NodeClass(Protocol):
    """One node class as validation sees it."""

    @property
    def custom_validated(self) -> tuple[str, ...]:
        """Inputs checked by the class's own VALIDATE_INPUTS (skips min/max/combo)."""
        ...

    @property
    def output_node(self) -> bool: ...

    @property
    def return_types(self) -> list[str]: ...


class Catalogue(Protocol):
    """The node classes a prompt is validated against."""

    def get(self, name: str) -> NodeClass | None: ...

    def input_types(self, node: Any) -> dict[str, dict[str, list[Any]]]:
        """The class's `input` section of /object_info, file combos filled in."""
        ...


@dataclass
class Validation:
    ok: bool
    error: Error | None = None
    outputs: list[str] = field(default_factory=list)
    node_errors: dict[str, Any] = field(default_factory=dict)


def _error(kind: str, message: str, details: str, **extra: Any) -> Error:
    return {"type": kind, "message": message, "details": details, "extra_info": extra}


def _exception_name(exc: BaseException) -> str:
    kind = type(exc)
    return (
        kind.__qualname__
        if kind.__module__ == "builtins"
        else f"{kind.__module__}.{kind.__qualname__}"
    )


def types_match(received: Any, expected: Any) -> bool:
    """ComfyUI's validate_node_input: equal, `*` (any), or overlapping comma lists."""
    if received == expected or expected == "*" or received == "*":
        return True
    if not isinstance(received, str) or not isinstance(expected, str):
        return False
    got = {t.strip() for t in received.split(",")}
    return bool(got & {t.strip() for t in expected.split(",")})


class _Validator:
    def __init__(
        self, prompt: dict[str, Any], catalogue: Catalogue, file_exists: Callable[[str], bool]
    ) -> None:
        self.prompt = prompt
        self.catalogue = catalogue
        self.file_exists = file_exists
        self.validated: dict[Any, Verdict] = {}

    def node_class(self, node_id: Any) -> NodeClass:
        node = self.catalogue.get(self.prompt[node_id]["class_type"])
        if node is None:  # unreachable after the class check in validate_prompt
            raise KeyError(node_id)
        return node

    def validate(self, unique_id: str) -> Verdict:
        if unique_id in self.validated:
            return self.validated[unique_id]
        inputs = self.prompt[unique_id]["inputs"]
        node = self.node_class(unique_id)
        spec = self.catalogue.input_types(node)
        errors: list[Error] = []
        valid = True
        names = [(n, "required") for n in spec.get("required", {})]
        names += [(n, "optional") for n in spec.get("optional", {})]
        for name, category in reversed(names):
            config = spec[category][name]
            info = [config[0], config[1] if len(config) > 1 else {}]
            if name not in inputs:
                if category == "required":
                    errors.append(
                        _error(
                            "required_input_missing",
                            "Required input is missing",
                            name,
                            input_name=name,
                        )
                    )
                continue
            if isinstance(inputs[name], list):
                valid = self._check_link(name, inputs[name], info, errors) and valid
            else:
                self._check_value(node, inputs, name, info, errors)
        self._custom_validation(node, inputs, errors)
        verdict: Verdict = (not errors and valid, errors, unique_id)
        self.validated[unique_id] = verdict
        return verdict

    def _check_link(self, name: str, val: list[Any], info: list[Any], errors: list[Error]) -> bool:
        if len(val) != 2:
            errors.append(
                _error(
                    "bad_linked_input",
                    "Bad linked input, must be a length-2 list of [node_id, slot_index]",
                    name,
                    input_name=name,
                    input_config=info,
                    received_value=val,
                )
            )
            return True
        received = self.node_class(val[0]).return_types[val[1]]
        if not types_match(received, info[0]):
            errors.append(
                _error(
                    "return_type_mismatch",
                    "Return type mismatch between linked nodes",
                    f"{name}, received_type({received}) mismatch input_type({info[0]})",
                    input_name=name,
                    input_config=info,
                    received_type=received,
                    linked_node=val,
                )
            )
            return True
        try:
            return self.validate(val[0])[0]
        except Exception as exc:
            self.validated[val[0]] = (
                False,
                [
                    _error(
                        "exception_during_inner_validation",
                        "Exception when validating inner node",
                        str(exc),
                        input_name=name,
                        input_config=info,
                        exception_message=str(exc),
                        exception_type=_exception_name(exc),
                        traceback=SIM_TRACEBACK,
                        linked_node=val,
                    )
                ],
                val[0],
            )
            return False

    def _check_value(
        self,
        node: NodeClass,
        inputs: dict[str, Any],
        name: str,
        info: list[Any],
        errors: list[Error],
    ) -> None:
        val = inputs[name]
        kind = info[0]
        try:
            if isinstance(val, dict) and "__value__" in val:
                val = inputs[name] = val["__value__"]
            convert = CONVERTERS.get(kind) if isinstance(kind, str) else None
            if convert is not None:
                val = inputs[name] = convert(val)
        except Exception as exc:
            errors.append(
                _error(
                    "invalid_input_type",
                    f"Failed to convert an input value to a {kind} value",
                    f"{name}, {val}, {exc}",
                    input_name=name,
                    input_config=info,
                    received_value=val,
                    exception_message=str(exc),
                )
            )
            return
        if name not in node.custom_validated:
            error = _range_error(name, val, info)
            if error is not None:
                errors.append(error)

    def _custom_validation(
        self, node: NodeClass, inputs: dict[str, Any], errors: list[Error]
    ) -> None:
        # LoadImage's VALIDATE_INPUTS is the only custom check among the built-in classes.
        for name in node.custom_validated:
            value = inputs.get(name)
            if isinstance(value, str) and not self.file_exists(value):
                errors.append(
                    _error(
                        "custom_validation_failed",
                        "Custom validation failed for node",
                        f"{name} - Invalid image file: {value}",
                        input_name=name,
                    )
                )


def _range_error(name: str, val: Any, info: list[Any]) -> Error | None:
    """min/max for numbers, membership for combos (skipped for custom-validated inputs)."""
    kind, extra = info
    common = {"input_name": name, "input_config": info, "received_value": val}
    if "min" in extra and val < extra["min"]:
        message = f"Value {val} smaller than min of {extra['min']}"
        return _error("value_smaller_than_min", message, name, **common)
    if "max" in extra and val > extra["max"]:
        message = f"Value {val} bigger than max of {extra['max']}"
        return _error("value_bigger_than_max", message, name, **common)
    if isinstance(kind, list) and val not in kind:
        # ComfyUI leaves long file lists out of the error body.
        long_list = len(kind) > 20
        listed = f"(list of length {len(kind)})" if long_list else str(kind)
        common["input_config"] = None if long_list else info
        return _error(
            "value_not_in_list", "Value not in list", f"{name}: '{val}' not in {listed}", **common
        )
    return None


def _class_error(prompt: dict[str, Any], catalogue: Catalogue) -> Error | None:
    for node_id, node in prompt.items():
        if not isinstance(node, dict) or "class_type" not in node:
            return _error(
                "invalid_prompt",
                "Cannot execute because a node is missing the class_type property.",
                f"Node ID '#{node_id}'",
            )
        class_type = node["class_type"]
        if not isinstance(class_type, str) or catalogue.get(class_type) is None:
            return _error(
                "invalid_prompt",
                f"Cannot execute because node {class_type} does not exist.",
                f"Node ID '#{node_id}'",
            )
    return None


def validate_prompt(
    prompt: dict[str, Any],
    catalogue: Catalogue,
    file_exists: Callable[[str], bool],
    partial_targets: list[str] | None = None,
) -> Validation:
    """Validate an API-format graph; may convert input values in place, like ComfyUI."""
    class_error = _class_error(prompt, catalogue)
    if class_error is not None:
        return Validation(False, class_error)
    outputs = [
        node_id
        for node_id, node in reversed(prompt.items())
        if _is_output(catalogue, node["class_type"])
        and (partial_targets is None or node_id in partial_targets)
    ]
    if not outputs:
        return Validation(False, _error("prompt_no_outputs", "Prompt has no outputs", ""))
    checker = _Validator(prompt, catalogue, file_exists)
    good: list[str] = []
    failed: list[tuple[str, list[Error]]] = []
    node_errors: dict[str, Any] = {}
    for output in outputs:
        valid, reasons = _validate_output(checker, output)
        if valid:
            good.append(output)
            continue
        failed.append((output, reasons))
        # Every node with its own errors so far is charged to this output too (ComfyUI
        # re-walks all validated nodes, which is why e4's node 3 lists outputs 3 and 2).
        for node_id, (ok, node_reasons, _) in checker.validated.items():
            if ok or not node_reasons:
                continue
            class_type = prompt[node_id]["class_type"]
            entry = node_errors.setdefault(
                node_id, {"errors": node_reasons, "dependent_outputs": [], "class_type": class_type}
            )
            entry["dependent_outputs"].append(output)
    if not good:
        details = "\n".join(f"{e['message']}: {e['details']}" for _, errs in failed for e in errs)
        error = _error(
            "prompt_outputs_failed_validation", "Prompt outputs failed validation", details
        )
        return Validation(False, error, [], node_errors)
    return Validation(True, None, good, node_errors)


def _validate_output(checker: _Validator, output: str) -> tuple[bool, list[Error]]:
    try:
        valid, reasons, _ = checker.validate(output)
    except Exception as exc:
        reasons = [
            _error(
                "exception_during_validation",
                "Exception when validating node",
                str(exc),
                exception_type=_exception_name(exc),
                traceback=SIM_TRACEBACK,
            )
        ]
        checker.validated[output] = (False, reasons, output)
        return False, reasons
    return valid, reasons


def _is_output(catalogue: Catalogue, class_type: str) -> bool:
    node = catalogue.get(class_type)
    return node is not None and node.output_node
