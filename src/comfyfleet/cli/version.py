from __future__ import annotations

import platform

import typer

from comfyfleet import __version__
from comfyfleet.cli.app import app


@app.command()
def version() -> None:
    """Print the comfyfleet version."""
    typer.echo(f"comfyfleet {__version__} (Python {platform.python_version()})")
