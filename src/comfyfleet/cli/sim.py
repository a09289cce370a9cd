from __future__ import annotations

from comfyfleet.cli.app import app, not_built


@app.command()
def sim() -> None:
    """Run a ComfyUI stand-in that speaks the recorded protocol (port 8188)."""
    not_built("sim", 3)
