"""The fleet's own ComfyUI frontend extensions, shipped in the wheel under `editor/web/`.

ComfyUI serves each custom node's web folder at `/extensions/<name>/` and lists its `.js`
files in `GET /extensions`; the frontend imports every listed file. The fleet's folder is
`/extensions/comfyfleet/`: `extension_urls()` is what the `/extensions` listing (the native
API's handler) includes, and `add_extension_routes` serves the files.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from aiohttp import web

from comfyfleet.web.openapi import NATIVE_ROUTE_PREFIX

# The folder name under /extensions/ (ComfyUI uses the custom node's folder name).
EXTENSION_NAME = "comfyfleet"
URL_PREFIX = f"/extensions/{EXTENSION_NAME}"


def extension_dir() -> Path:
    """The folder of the fleet's extension files inside the installed package."""
    return Path(str(resources.files("comfyfleet.editor").joinpath("web")))


def extension_urls() -> list[str]:
    """The URL path of every extension script, as ComfyUI lists them in `GET /extensions`
    (sorted, so the listing is the same on every replica)."""
    root = extension_dir()
    return sorted(f"{URL_PREFIX}/{p.relative_to(root).as_posix()}" for p in root.rglob("*.js"))


def add_extension_routes(app: web.Application) -> None:
    """Serve the extension files at /extensions/comfyfleet/ (behind the app's auth)."""
    app.router.add_static(URL_PREFIX, extension_dir(), name=f"{NATIVE_ROUTE_PREFIX}ext_fleet")
