"""ComfyUI's web frontend, served by the balancer at `/` from the `comfyui-frontend-package`
wheel (the `editor` extra) -- the same files a ComfyUI 0.3.64 serves from its web root.

The frontend finds its server from its own address: API calls go to `<dir>/api/...`,
the socket to `<dir>/ws`, extension scripts to `<dir>/extensions/...`, where `<dir>` is
the page's folder. At `/` those are the native API's paths, so nothing is rewritten.
Each top-level entry of the package's folder gets its own route (rather than one static
route at `/`) so a path that is neither the frontend's nor the fleet's stays a plain 404.
Without the package, `/` answers a 404 that says how to install it.
"""

from __future__ import annotations

from pathlib import Path

from aiohttp import web
from aiohttp.typedefs import Handler

from comfyfleet.errors import NotFound
from comfyfleet.web.openapi import NATIVE_ROUTE_PREFIX

# The frontend's core extension folders are served but never listed: the frontend skips
# "extensions/core" entries of GET /extensions (they are bundled).
EXTENSIONS = "extensions"
# Resource names in the native prefix: ComfyUI's files, not operations of the fleet's API.
PREFIX = f"{NATIVE_ROUTE_PREFIX}frontend_"
INDEX = "index.html"


def frontend_root() -> Path | None:
    """The frontend's static folder, or None when the `editor` extra is not installed."""
    try:
        import comfyui_frontend_package
    except ImportError:
        return None
    root = Path(comfyui_frontend_package.__file__).parent / "static"
    return root if (root / INDEX).is_file() else None


def add_frontend_routes(app: web.Application, root: Path | None) -> None:
    """GET / (the editor's page) and the frontend's assets, or the "not installed" answer."""
    if root is None:

        async def missing(_request: web.Request) -> web.StreamResponse:
            raise NotFound("the editor is not installed: pip install 'comfyfleet[editor]'")

        app.router.add_get("/", missing, name=f"{PREFIX}root")
        return
    index = root / INDEX

    async def page(_request: web.Request) -> web.StreamResponse:
        # Not cached: a new frontend version must reach a browser with the next load
        # (the assets it names are content-hashed, so they may be cached).
        return web.FileResponse(index, headers={"Cache-Control": "no-cache"})

    app.router.add_get("/", page, name=f"{PREFIX}root")
    for entry in sorted(root.iterdir()):
        name = PREFIX + "".join(c if c.isalnum() else "_" for c in entry.name)
        if entry.name == INDEX:
            continue
        if entry.is_file():
            app.router.add_get(f"/{entry.name}", _file(entry), name=name)
        elif entry.name == EXTENSIONS:
            for folder in sorted(p for p in entry.iterdir() if p.is_dir()):
                app.router.add_static(
                    f"/{EXTENSIONS}/{folder.name}", folder, name=f"{name}_{folder.name}"
                )
        else:
            app.router.add_static(f"/{entry.name}", entry, name=name)


def _file(path: Path) -> Handler:
    async def serve(_request: web.Request) -> web.StreamResponse:
        return web.FileResponse(path)

    return serve
