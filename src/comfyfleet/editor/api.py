"""What ComfyUI's frontend needs from a server besides the execution API: users, settings,
user data (saved workflows), translations and template listings, in ComfyUI 0.3.64's
shapes (`app/user_manager.py`, `app/app_settings.py`, `app/custom_node_manager.py`).

Every route answers at its ComfyUI path and under `/api/` (ComfyUI serves both; the
frontend calls `/api/...`); like the native API's routes they are ComfyUI's, named in its
prefix, and left out of the fleet's OpenAPI document. Data is per principal
(store/userdata.py): the admin's editor and an API key's never share files. The fleet is one
ComfyUI "user" per principal, so `/users` answers ComfyUI's single-user shape (no user
picker) and creating users is refused.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any
from urllib.parse import unquote

from aiohttp import web
from aiohttp.typedefs import Handler

from comfyfleet.balancer.appkeys import USERDATA, WORKFLOWS
from comfyfleet.errors import BadRequest, NotFound
from comfyfleet.store.userdata import MAX_FILE_BYTES, FileInfo, clean_path
from comfyfleet.templates.model import WORKFLOW_NAME_PATTERN
from comfyfleet.web.auth import principal_of
from comfyfleet.web.openapi import NATIVE_ROUTE_PREFIX
from comfyfleet.web.responses import PayloadTooLarge, json_response, read_bounded, read_json

routes = web.RouteTableDef()
# The paths ComfyUI serves both bare and under this prefix.
API_PREFIX = "/api"
# The template module the fleet's published workflows show under in the editor.
TEMPLATE_MODULE = "fleet"
_WORKFLOW_NAME = re.compile(WORKFLOW_NAME_PATTERN)


def _both(method: str, path: str) -> Callable[[Handler], Handler]:
    """Register the handler at `path` and at `/api` + `path`, as ComfyUI does."""

    def register(handler: Handler) -> Handler:
        for full in (path, API_PREFIX + path):
            routes.route(method, full, name=route_name(method, full))(handler)
        return handler

    return register


def route_name(method: str, path: str) -> str:
    """A resource name in the native prefix: ComfyUI's routes are described by ComfyUI, so
    the fleet's OpenAPI document and its query guard leave them out (web/openapi.py)."""
    words = "".join(c if c.isalnum() else "_" for c in path).strip("_")
    return f"{NATIVE_ROUTE_PREFIX}editor_{method.lower()}_{words}"


def _who(request: web.Request) -> str:
    return principal_of(request).label


def _flag(request: web.Request, name: str, default: bool) -> bool:
    """A ComfyUI boolean query flag: "true"/"false" (any case); absent: `default`."""
    raw = request.query.get(name)
    if raw is None or raw == "undefined":  # the frontend sends "undefined" for unset options
        return default
    value = raw.lower()
    if value not in ("true", "false"):
        raise BadRequest(f"{name} must be true or false, not {raw!r}", field=name)
    return value == "true"


def _path_param(request: web.Request, name: str) -> str:
    raw = request.match_info[name]
    # The frontend percent-encodes "/" inside the one path segment (ComfyUI unquotes too).
    return clean_path(unquote(raw) if "%" in raw else raw, name)


def _file_info(info: FileInfo, relative_to: str = "") -> dict[str, Any]:
    """ComfyUI's FileInfo: path relative to the listed folder, times in seconds."""
    return {
        "path": info.path[len(relative_to) :],
        "size": info.size,
        "modified": info.modified_ms / 1000,
        "created": info.created_ms / 1000,
    }


# -- users and settings -------------------------------------------------------------------


@_both("GET", "/users")
async def get_users(_request: web.Request) -> web.Response:
    # Single-user shape: the principal is the user; "migrated" stops the frontend from
    # offering to move browser-stored settings to the server.
    return json_response({"storage": "server", "migrated": True})


@_both("POST", "/users")
async def post_users(_request: web.Request) -> web.Response:
    raise BadRequest("users are the balancer's principals (basic auth, API keys); not created here")


@_both("GET", "/settings")
async def get_settings(request: web.Request) -> web.Response:
    return json_response(await request.app[USERDATA].settings(_who(request)))


@_both("POST", "/settings")
async def post_settings(request: web.Request) -> web.Response:
    values = await read_json(request)
    if not isinstance(values, dict):
        raise BadRequest("settings: a JSON object of id -> value is needed", field="body")
    await request.app[USERDATA].update_settings(_who(request), values)
    return web.Response(status=200)


@_both("GET", "/settings/{id}")
async def get_setting(request: web.Request) -> web.Response:
    return json_response(
        await request.app[USERDATA].setting(_who(request), request.match_info["id"])
    )


@_both("POST", "/settings/{id}")
async def post_setting(request: web.Request) -> web.Response:
    value = await read_json(request)
    await request.app[USERDATA].update_settings(_who(request), {request.match_info["id"]: value})
    return web.Response(status=200)


# -- user data ----------------------------------------------------------------------------


@_both("GET", "/userdata")
async def list_userdata(request: web.Request) -> web.Response:
    """ComfyUI's listing: `dir` (required), `recurse`, `full_info`, `split`; 404 when the
    folder holds no file (ComfyUI: when it does not exist)."""
    # The frontend asks for "subgraphs/" with the trailing slash.
    folder = clean_path(request.query.get("dir", "").rstrip("/"), "dir")
    recurse = _flag(request, "recurse", False)
    full_info = _flag(request, "full_info", False)
    split = _flag(request, "split", False)
    files = await request.app[USERDATA].list(_who(request), folder, recurse=recurse)
    if not files:
        raise web.HTTPNotFound(text="Directory not found")
    base = folder + "/"
    if full_info:
        return json_response([_file_info(f, base) for f in files])
    relative = [f.path[len(base) :] for f in files]
    if split:
        return json_response([[path, *path.split("/")] for path in relative])
    return json_response(relative)


@_both("GET", "/v2/userdata")
async def list_userdata_v2(request: web.Request) -> web.Response:
    """ComfyUI's v2 listing under `path` ("" = root): folders first, then files, by name."""
    raw = request.query.get("path", "")
    folder = clean_path(unquote(raw), "path") if raw else ""
    files = await request.app[USERDATA].list(_who(request), folder)
    if folder and not files:
        raise web.HTTPNotFound(text="Requested path not found")
    base = folder + "/" if folder else ""
    folders: set[str] = set()
    entries: list[dict[str, Any]] = []
    for f in files:
        parts = f.path[len(base) :].split("/")
        for depth in range(1, len(parts)):
            folders.add(base + "/".join(parts[:depth]))
        name = parts[-1]
        entries.append(
            {
                "name": name,
                "path": f.path,
                "type": "file",
                "size": f.size,
                "modified": f.modified_ms / 1000,
            }
        )
    dirs = [{"name": d.rsplit("/", 1)[-1], "path": d, "type": "directory"} for d in folders]
    dirs.sort(key=lambda e: str(e["name"]).lower())
    entries.sort(key=lambda e: str(e["name"]).lower())
    return json_response(dirs + entries)


@_both("GET", "/userdata/{file}")
async def get_userdata(request: web.Request) -> web.Response:
    path = _path_param(request, "file")
    body = await request.app[USERDATA].get(_who(request), path)
    content_type = "application/json" if path.endswith(".json") else "application/octet-stream"
    return web.Response(body=body, content_type=content_type)


@_both("POST", "/userdata/{file}")
async def post_userdata(request: web.Request) -> web.Response:
    """Write the body as the file; `overwrite=false` refuses an existing one (409)."""
    path = _path_param(request, "file")
    overwrite = _flag(request, "overwrite", True)
    full_info = _flag(request, "full_info", False)
    if request.content_length is not None and request.content_length > MAX_FILE_BYTES:
        raise PayloadTooLarge(f"a user data file is at most {MAX_FILE_BYTES} bytes")
    body = await read_bounded(request.content, MAX_FILE_BYTES, "user data file")
    info = await request.app[USERDATA].put(_who(request), path, body, overwrite=overwrite)
    return json_response(_file_info(info) if full_info else info.path)


@_both("DELETE", "/userdata/{file}")
async def delete_userdata(request: web.Request) -> web.Response:
    await request.app[USERDATA].delete(_who(request), _path_param(request, "file"))
    return web.Response(status=204)


@_both("POST", "/userdata/{file}/move/{dest}")
async def move_userdata(request: web.Request) -> web.Response:
    source = _path_param(request, "file")
    dest = _path_param(request, "dest")
    overwrite = _flag(request, "overwrite", True)
    full_info = _flag(request, "full_info", False)
    info = await request.app[USERDATA].move(_who(request), source, dest, overwrite=overwrite)
    return json_response(_file_info(info) if full_info else info.path)


# -- what custom nodes would add ----------------------------------------------------------


@_both("GET", "/i18n")
async def get_i18n(_request: web.Request) -> web.Response:
    # ComfyUI merges custom nodes' locales here; the fleet's nodes add none of their own
    # to the editor (the frontend carries its translations).
    return json_response({})


@_both("GET", "/workflow_templates")
async def get_workflow_templates(request: web.Request) -> web.Response:
    """ComfyUI lists custom nodes' example workflows here by module; the fleet offers its
    published workflows that carry a UI graph, so the editor's template browser opens them
    (the active version) for editing and publishing again."""
    names = sorted(t.name for t in await request.app[WORKFLOWS].list() if t.ui is not None)
    return json_response({TEMPLATE_MODULE: names} if names else {})


@routes.get("/templates/index.json", name=route_name("GET", "/templates/index.json"))
async def get_core_templates(_request: web.Request) -> web.Response:
    # ComfyUI's own templates (the comfyui-workflow-templates package, with models the
    # fleet may not have) are not offered: the fleet's workflows are (above).
    return json_response([])


_TEMPLATE_FILE = f"{API_PREFIX}/workflow_templates/{TEMPLATE_MODULE}/{{file}}"


@routes.get(_TEMPLATE_FILE, name=route_name("GET", _TEMPLATE_FILE))
async def get_workflow_template(request: web.Request) -> web.Response:
    """`NAME.json`: the active version's UI graph (ComfyUI serves the module's folder here;
    thumbnails, `NAME.jpg`, the fleet has none)."""
    name, _, kind = request.match_info["file"].rpartition(".")
    if kind != "json" or not _WORKFLOW_NAME.match(name):
        raise NotFound(f"no template file {request.match_info['file']!r}")
    template = await request.app[WORKFLOWS].get(name)
    if template.ui is None:
        raise NotFound(f"workflow {name!r} has no UI graph to open")
    return json_response(template.ui)
