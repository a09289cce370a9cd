"""The editor's files: ComfyUI's frontend at /, the fleet's extension under
/extensions/comfyfleet/ (listed by `extension_urls` for GET /extensions), and a clear 404
where the `editor` extra is not installed."""

from __future__ import annotations

import json

from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from comfyfleet.editor.extensions import extension_dir, extension_urls
from comfyfleet.editor.frontend import add_frontend_routes, frontend_root
from comfyfleet.web.problems import problem_middleware
from tests.api.conftest import ADMIN_AUTH, Role

# What a browser takes as a module script's type (the system's MIME table picks one).
JS_TYPES = ("text/javascript", "application/javascript")


async def test_the_frontend_and_the_extension_are_served(balancer: Role) -> None:
    status, headers, body = await balancer.call("GET", "/", auth=ADMIN_AUTH)
    assert status == 200
    assert headers["Content-Type"].startswith("text/html")
    assert headers["Cache-Control"] == "no-cache"
    assert b"<title>ComfyUI</title>" in body
    # Module scripts load only with a JavaScript type (the balancer says nosniff).
    for path in ("/scripts/app.js", "/assets/lib/vue/dist/vue.esm-browser.prod.js"):
        status, headers, _ = await balancer.call("GET", path, auth=ADMIN_AUTH)
        assert (status, headers["Content-Type"] in JS_TYPES) == (200, True), (path, headers)

    assert extension_urls() == ["/extensions/comfyfleet/publish.js"]
    status, headers, body = await balancer.call("GET", extension_urls()[0], auth=ADMIN_AUTH)
    assert (status, headers["Content-Type"] in JS_TYPES) == (200, True)
    assert body == (extension_dir() / "publish.js").read_bytes()
    assert b"/api/v1/workflows/" in body

    status, _, _ = await balancer.call("GET", "/nothing-here.js", auth=ADMIN_AUTH)
    assert status == 404
    status, _, body = await balancer.call("GET", "/api/i18n", auth=ADMIN_AUTH)
    assert (status, body) == (200, b"{}")


async def test_without_the_editor_extra_root_says_how_to_install_it() -> None:
    assert frontend_root() is not None  # the test extra installs it
    app = web.Application(middlewares=[problem_middleware])
    add_frontend_routes(app, None)
    async with TestClient(TestServer(app)) as client:
        res = await client.get("/")
        assert res.status == 404
        problem = json.loads(await res.read())
        assert "comfyfleet[editor]" in problem["detail"]


async def test_the_fleets_workflows_are_the_editors_templates(balancer: Role) -> None:
    status, _, body = await balancer.call("GET", "/api/workflow_templates", auth=ADMIN_AUTH)
    assert status == 200
    listed = json.loads(body)
    assert set(listed) == {"fleet"}
    assert {"solid", "blur"} <= set(listed["fleet"])  # built-ins that carry a UI graph
    status, _, body = await balancer.call(
        "GET", "/api/workflow_templates/fleet/solid.json", auth=ADMIN_AUTH
    )
    assert status == 200
    ui = json.loads(body)
    assert any(node.get("title") == "Solid Color" for node in ui["nodes"])
    for missing in ("nope.json", "solid.jpg", "..%2Fsolid.json"):
        status, _, _ = await balancer.call(
            "GET", f"/api/workflow_templates/fleet/{missing}", auth=ADMIN_AUTH
        )
        assert status == 404, missing
    status, _, body = await balancer.call("GET", "/templates/index.json", auth=ADMIN_AUTH)
    assert (status, json.loads(body)) == (200, [])
