from __future__ import annotations

from comfyfleet.cli.app import app, not_built


@app.command()
def node() -> None:
    """Run a node that drives one ComfyUI (port 8101)."""
    not_built("node", 4)
