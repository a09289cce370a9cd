"""The editor's settings and user data (saved workflows) on the balancer, in ComfyUI's shapes:
per principal, kept in Redis so a restarted balancer (a new app on the same Redis) still
has them, and bad paths or flags refused with a 4xx naming the problem."""

from __future__ import annotations

import io
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import aiohttp
from aiohttp.test_utils import TestServer

from comfyfleet.balancer.app import create_app as balancer_app
from comfyfleet.config import BalancerConfig, RedisConfig
from comfyfleet.store.userdata import MAX_FILE_BYTES
from comfyfleet.web.auth import bearer_header
from tests.api.conftest import ADMIN_AUTH, Role, server

WORKFLOW = {"last_node_id": 1, "nodes": [{"id": 1, "type": "EmptyImage"}], "links": []}


@asynccontextmanager
async def balancer_on(
    redis_config: RedisConfig, session: aiohttp.ClientSession
) -> AsyncIterator[Role]:
    """One balancer process's app on the shared Redis, stopped on exit (its own clients,
    caches and stores: nothing carries over in memory to the next one)."""
    app = balancer_app(BalancerConfig(server=server(), redis=redis_config))
    async with TestServer(app, host="127.0.0.1") as srv:
        yield Role(app, str(srv.make_url("")).rstrip("/"), session)


async def _json(role: Role, method: str, path: str, auth: str = ADMIN_AUTH, **kw: Any) -> Any:
    status, _, body = await role.call(method, path, auth=auth, **kw)
    return status, (json.loads(body) if body else None)


async def _api_key(role: Role, name: str) -> str:
    status, body = await _json(role, "POST", "/api/v1/apikeys", json={"name": name})
    assert status == 201, body
    return bearer_header(body["key"])


async def test_saved_workflows_are_per_principal_and_survive_a_restart(
    redis_config: RedisConfig, session: aiohttp.ClientSession
) -> None:
    path = "/api/userdata/workflows%2Fmy%20flow.json"
    async with balancer_on(redis_config, session) as first:
        key_a = await _api_key(first, "a")
        key_b = await _api_key(first, "b")
        status, info = await _json(first, "POST", path + "?overwrite=false&full_info=true",
                                   data=json.dumps(WORKFLOW))  # fmt: skip
        assert status == 200, info
        assert (info["path"], info["size"]) == ("workflows/my flow.json", len(json.dumps(WORKFLOW)))
        assert info["modified"] >= info["created"] > 1e9  # seconds, as ComfyUI answers
        other = {"nodes": [], "owner": "a"}
        status, _ = await _json(first, "POST", path, auth=key_a, data=json.dumps(other))
        assert status == 200
        status, _, _ = await first.call("GET", path, auth=key_b)
        assert status == 404  # b has no such file; a's and the admin's are their own
        status, _ = await _json(first, "POST", "/api/settings/Comfy.ColorPalette", json="light")
        assert status == 200
        mine = {"Comfy.ColorPalette": "dark", "Comfy.Zoom": 2}
        status, _ = await _json(first, "POST", "/api/settings", auth=key_a, json=mine)
        assert status == 200

    async with balancer_on(redis_config, session) as restarted:
        status, _, body = await restarted.call("GET", path, auth=ADMIN_AUTH)
        assert (status, json.loads(body)) == (200, WORKFLOW)
        status, _, body = await restarted.call("GET", path, auth=key_a)
        assert (status, json.loads(body)) == (200, other)
        listing = "/api/userdata?dir=workflows&recurse=true&split=false&full_info=true"
        status, files = await _json(restarted, "GET", listing)
        assert status == 200
        assert [f["path"] for f in files] == ["my flow.json"]
        status, _ = await _json(restarted, "GET", listing, auth=key_b)
        assert status == 404  # ComfyUI's answer for a folder with nothing in it
        assert await _json(restarted, "GET", "/api/settings") == (
            200,
            {"Comfy.ColorPalette": "light"},
        )
        assert await _json(restarted, "GET", "/api/settings/Comfy.ColorPalette", auth=key_a) == (
            200,
            "dark",
        )
        assert await _json(restarted, "GET", "/api/settings/Comfy.Zoom", auth=key_b) == (200, None)


async def test_userdata_write_move_list_delete(balancer: Role) -> None:
    async def post(name: str, body: bytes, query: str = "") -> tuple[int, Any]:
        return await _json(balancer, "POST", f"/api/userdata/{name}{query}", data=body)

    assert await post("workflows%2Fa.json", b"{}") == (200, "workflows/a.json")
    status, problem = await post("workflows%2Fa.json", b"{}", "?overwrite=false")
    assert status == 409, problem
    assert "exists" in problem["detail"]
    assert (await post("workflows%2Fsub%2Fb.json", b"[1]"))[0] == 200
    assert (await post("comfy.templates.json", b"[]"))[0] == 200

    listing = "/api/userdata?dir=workflows"
    assert await _json(balancer, "GET", listing) == (200, ["a.json"])
    assert await _json(balancer, "GET", listing + "&recurse=true") == (
        200,
        ["a.json", "sub/b.json"],
    )
    assert await _json(balancer, "GET", listing + "&recurse=true&split=true") == (
        200,
        [["a.json", "a.json"], ["sub/b.json", "sub", "b.json"]],
    )
    status, tree = await _json(balancer, "GET", "/api/v2/userdata?path=workflows")
    assert status == 200
    assert [(e["type"], e["path"]) for e in tree] == [
        ("directory", "workflows/sub"),
        ("file", "workflows/a.json"),
        ("file", "workflows/sub/b.json"),
    ]

    move = "/api/userdata/workflows%2Fa.json/move/workflows%2Fsub%2Fb.json"
    status, problem = await _json(balancer, "POST", move + "?overwrite=false")
    assert status == 409, problem
    status, moved = await _json(balancer, "POST", move + "?full_info=true")
    assert (status, moved["path"], moved["size"]) == (200, "workflows/sub/b.json", 2)
    assert await _json(balancer, "GET", listing + "&recurse=true") == (200, ["sub/b.json"])
    assert (await _json(balancer, "POST", move))[0] == 404  # the source is gone

    status, _, _ = await balancer.call("DELETE", "/api/userdata/workflows%2Fsub%2Fb.json",
                                       auth=ADMIN_AUTH)  # fmt: skip
    assert status == 204
    assert (await _json(balancer, "GET", listing))[0] == 404
    status, _, _ = await balancer.call("DELETE", "/api/userdata/workflows%2Fsub%2Fb.json",
                                       auth=ADMIN_AUTH)  # fmt: skip
    assert status == 404


async def test_bad_userdata_requests_are_clear_4xx(balancer: Role) -> None:
    for name in ("..%2Fsecret.json", "workflows%2F..%2F..%2Fx", "%2Fabs.json", "a%5Cb.json",
                 "workflows%2F%2Fx.json"):  # fmt: skip
        status, problem = await _json(balancer, "POST", f"/api/userdata/{name}", data=b"{}")
        assert status == 400, (name, problem)
        assert (problem["code"], "path" in problem["detail"]) == ("bad-request", True), problem
    status, problem = await _json(balancer, "GET", "/api/userdata?dir=")
    assert (status, problem["field"]) == (400, "dir")
    status, problem = await _json(balancer, "GET", "/api/userdata?dir=workflows&recurse=yes")
    assert (status, problem["field"]) == (400, "recurse")
    status, problem = await _json(balancer, "POST", "/api/settings", json=[1, 2])
    assert (status, problem["field"]) == (400, "body")
    status, problem = await _json(balancer, "POST", "/api/settings/x", data=b"{not json")
    assert status == 400, problem
    status, problem = await _json(balancer, "POST", "/api/userdata/big.json",
                                  data=io.BytesIO(b"x" * (MAX_FILE_BYTES + 1)))  # fmt: skip
    assert status == 413, problem
    status, _ = await _json(balancer, "POST", "/api/users", json={"username": "eve"})
    assert status == 400
    assert await _json(balancer, "GET", "/api/users") == (
        200,
        {"storage": "server", "migrated": True},
    )


async def test_editor_routes_need_credentials(balancer: Role) -> None:
    for path in ("/", "/api/settings", "/api/userdata?dir=workflows", "/api/users",
                 "/extensions/comfyfleet/publish.js"):  # fmt: skip
        status, _, _ = await balancer.call("GET", path)
        assert status == 401, path
