"""Helpers for template tests: copies of the shipped folder to break on purpose."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
import pytest

from comfyfleet.templates.builtin import builtin_folder


def read_json(path: Path) -> Any:
    return orjson.loads(path.read_bytes())


def write_json(path: Path, data: Any) -> None:
    path.write_bytes(orjson.dumps(data, option=orjson.OPT_INDENT_2))


@pytest.fixture
def workflows_copy(tmp_path: Path) -> Path:
    """A private copy of the shipped workflows folder."""
    folder = tmp_path / "workflows"
    shutil.copytree(builtin_folder(), folder)
    return folder


@pytest.fixture
def edit_json(workflows_copy: Path) -> Callable[[str, Callable[[Any], None]], Path]:
    """Change one file of the copy in place: edit_json("solid-api.json", fn)."""

    def edit(name: str, change: Callable[[Any], None]) -> Path:
        path = workflows_copy / name
        data = read_json(path)
        change(data)
        write_json(path, data)
        return path

    return edit
