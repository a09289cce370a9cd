"""Where the workflows shipped with comfyfleet live."""

from __future__ import annotations

from pathlib import Path

import comfyfleet
from comfyfleet.errors import ConfigError


def builtin_folder() -> Path:
    """The shipped `workflows/` folder: inside the installed package for a wheel (pyproject
    force-includes it as `comfyfleet/builtin_workflows`), at the repo root for a source or
    editable checkout."""
    package = Path(comfyfleet.__file__).resolve().parent
    for candidate in (package / "builtin_workflows", package.parents[1] / "workflows"):
        if candidate.is_dir():
            return candidate
    raise ConfigError(f"built-in workflows not found beside {package}; is the install broken?")
