from __future__ import annotations

import subprocess
import sys

from typer.testing import CliRunner

from comfyfleet import __version__
from comfyfleet.cli import app


def test_help_lists_every_command() -> None:
    result = CliRunner().invoke(app, ["--help"])
    assert result.exit_code == 0
    for command in ("balancer", "node", "up", "sim", "submit", "version"):
        assert command in result.output


def test_version_via_module() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "comfyfleet", "version"], capture_output=True, text=True, check=True
    )
    assert __version__ in out.stdout
