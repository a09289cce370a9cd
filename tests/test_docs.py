"""The documentation stays true: the CLI reference is generated, and every option has an
environment-variable twin (DESIGN "Interfaces")."""

from __future__ import annotations

from pathlib import Path

import typer.main

from comfyfleet.cli import app
from comfyfleet.cli.reference import leaves, render

ROOT = Path(__file__).resolve().parents[1]


def test_cli_reference_is_current() -> None:
    current = (ROOT / "docs" / "cli.md").read_text()
    assert current == render(), "run: python -m comfyfleet.cli.reference > docs/cli.md"


def test_every_option_has_an_env_var_twin() -> None:
    command = typer.main.get_command(app)
    missing = [
        f"{name} {param.opts[0]}"
        for name, sub in leaves(getattr(command, "commands", {}))
        for param in sub.params
        if param.opts and param.opts[0].startswith("--") and param.name != "help"
        if not getattr(param, "envvar", None)
    ]
    assert not missing, f"options without an env var: {missing}"


def test_seed_variable_names_are_accepted() -> None:
    command = typer.main.get_command(app)
    envvars: set[str] = set()
    for sub in getattr(command, "commands", {}).values():
        for param in sub.params:
            value = getattr(param, "envvar", None) or []
            envvars.update([value] if isinstance(value, str) else value)
    seed = {"API_USERNAME", "API_PASSWORD", "SERVICE_HOST", "SERVICE_PORT", "REDIS_HOST",
            "REDIS_PORT", "REDIS_PASSWORD", "REDIS_DB", "REDIS_URL"}  # fmt: skip
    assert seed <= envvars, seed - envvars
