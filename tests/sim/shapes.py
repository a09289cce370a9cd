"""Compare recorded ComfyUI messages and bodies with the stand-in's by shape: same keys,
same value types, same list lengths; ids, timestamps and run-specific numbers may differ."""

from __future__ import annotations

from typing import Any

# Keys whose values differ by nature between runs/servers: compared by type only.
LOOSE = frozenset({"traceback", "current_outputs", "exception_message", "current_inputs"})


def shape(value: Any, loose: frozenset[str] = LOOSE) -> Any:
    if isinstance(value, dict):
        return {k: _kind(v) if k in loose else shape(v, loose) for k, v in value.items()}
    if isinstance(value, list):
        return [shape(v, loose) for v in value]
    return _kind(value)


def _kind(value: Any) -> str:
    if value is None:
        return "null"
    return type(value).__name__


def kinds(messages: list[dict[str, Any]]) -> list[str]:
    return [m["type"] for m in messages]


def assert_same_messages(
    expected: list[dict[str, Any]], actual: list[dict[str, Any]], loose: frozenset[str] = LOOSE
) -> None:
    """Same message types in the same order, each with the same shape."""
    assert kinds(actual) == kinds(expected), "message types/order differ"
    for index, (want, got) in enumerate(zip(expected, actual, strict=True)):
        assert shape(got, loose) == shape(want, loose), f"message {index} ({want['type']})"


def job_messages(messages: list[dict[str, Any]], prompt_id: str) -> list[dict[str, Any]]:
    """The messages about one job (those carrying its prompt_id)."""
    return [
        m
        for m in messages
        if isinstance(m.get("data"), dict) and m["data"].get("prompt_id") == prompt_id
    ]
