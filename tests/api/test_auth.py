"""Auth on both roles: a walk over every route of each app's router proves which routes are
open and that every other one refuses a request without (or with wrong) credentials and
serves one with basic auth or a live bearer key. Secrets never reach logs or answers."""

from __future__ import annotations

import base64
import json
import logging
import re

import pytest
import structlog
from aiohttp import web
from typer.testing import CliRunner

from comfyfleet.balancer.app import create_app as balancer_app
from comfyfleet.cli import app as cli
from comfyfleet.config import BalancerConfig, NodeConfig, ServerConfig
from comfyfleet.errors import ConfigError
from comfyfleet.node.app import create_app as node_app
from comfyfleet.web.auth import OPEN_ROUTES, basic_auth_header, bearer_header
from tests.api.conftest import ADMIN_AUTH, PASSWORD, USER, Role

SAMPLES = {"job_id": "0" * 32, "index": "0", "node_id": "nobody", "name": "txt2img",
           "asset": "swagger-ui.css", "key_id": "0" * 12}  # fmt: skip
ADMIN_ONLY = re.compile(
    r"^(/api/v1/(apikeys|alerts|tenants|comfy/queue|comfy/history)|(/api)?/free$)"
)
# Routes a key may use only with the "workflows" scope (the walk's key has no scope).
SCOPED = {
    ("POST", "/api/v1/workflows/{name}/versions"),
    ("POST", "/api/v1/workflows/{name}/rollback"),
    ("DELETE", "/api/v1/workflows/{name}"),
    # A key interrupts only a named prompt of its own jobs (tests/api/test_isolation.py).
    ("POST", "/api/v1/comfy/interrupt"),
}


def _routes(role: Role) -> list[tuple[str, str, str]]:
    """(method, canonical path, a concrete path) of every route but HEAD twins."""
    out = []
    for route in role.app.router.routes():
        if route.method == "HEAD" or route.resource is None:
            continue
        canonical = route.resource.canonical
        path = re.sub(r"\{(\w+)\}", lambda m: SAMPLES.get(m.group(1), "x"), canonical)
        if isinstance(route.resource, web.StaticResource):
            path += "/x.js"  # a file under the folder (the folder itself is 403 to everyone)
        out.append((route.method, canonical, path))
    return sorted(out)


async def _walk(role: Role, key: str) -> None:
    wrong = basic_auth_header(USER, PASSWORD + "x")
    assert _routes(role)
    for method, canonical, path in _routes(role):
        body = {"json": {}} if method in ("POST", "PUT", "PATCH") else {}
        where = f"{method} {canonical}"
        anonymous, headers, _ = await role.call(method, path, **body)
        if canonical in OPEN_ROUTES:
            assert anonymous != 401, where
            continue
        assert anonymous == 401, where
        assert headers["Content-Type"] == "application/problem+json", where
        assert "Basic" in headers["WWW-Authenticate"], where
        for bad in (wrong, bearer_header("cfk_" + "0" * 12 + "_" + "A" * 43), "Bearer x"):
            status, headers, _ = await role.call(method, path, auth=bad, **body)
            assert status == 401, f"{where} with {bad[:12]}..."
            # A wrong key is told so the RFC 6750 way, with no Basic challenge that would
            # pop up a browser's login dialog.
            challenge = headers["WWW-Authenticate"]
            assert ("Basic" in challenge) == (bad == wrong), where
            assert ('error="invalid_token"' in challenge) == (bad != wrong), where
        status, _, _ = await role.call(method, path, auth=ADMIN_AUTH, **body)
        assert status not in (401, 403), where
        status, _, _ = await role.call(method, path, auth=bearer_header(key), **body)
        if ADMIN_ONLY.match(canonical) or (method, canonical) in SCOPED:
            assert status == 403, where
        else:
            assert status not in (401, 403), where


async def _create_key(balancer: Role, name: str = "walk") -> dict[str, str]:
    status, _, body = await balancer.call(
        "POST", "/api/v1/apikeys", auth=ADMIN_AUTH, json={"name": name}
    )
    assert status == 201, body
    created: dict[str, str] = json.loads(body)
    return created


async def test_every_balancer_route_needs_auth_unless_open(balancer: Role) -> None:
    key = (await _create_key(balancer))["key"]
    await _walk(balancer, key)


async def test_every_node_route_needs_auth_unless_open(balancer: Role, node: Role) -> None:
    # Both roles share Redis, so a key made on the balancer works on its nodes.
    key = (await _create_key(balancer))["key"]
    await _walk(node, key)


async def test_keys_are_listed_without_secrets_and_revoked_at_once(balancer: Role) -> None:
    created = await _create_key(balancer, "ci-pipeline")
    auth = bearer_header(created["key"])
    assert (await balancer.call("GET", "/api/v1/jobs", auth=auth))[0] == 200
    status, _, body = await balancer.call("GET", "/api/v1/apikeys", auth=ADMIN_AUTH)
    assert status == 200
    listed = json.loads(body)["keys"]
    assert [k["name"] for k in listed] == ["ci-pipeline"]
    assert listed[0]["last_used_ms"] is not None
    assert created["key"] not in body.decode()
    assert "sha256" not in body.decode()
    status, _, _ = await balancer.call("DELETE", f"/api/v1/apikeys/{created['id']}", auth=auth)
    assert status == 403  # a key cannot revoke (or mint) keys
    status, _, _ = await balancer.call(
        "DELETE", f"/api/v1/apikeys/{created['id']}", auth=ADMIN_AUTH
    )
    assert status == 204
    assert (await balancer.call("GET", "/api/v1/jobs", auth=auth))[0] == 401
    status, _, _ = await balancer.call(
        "DELETE", f"/api/v1/apikeys/{created['id']}", auth=ADMIN_AUTH
    )
    assert status == 404


async def test_secrets_never_reach_logs_or_answers(
    balancer: Role, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    with structlog.testing.capture_logs() as logs:
        created = await _create_key(balancer, "leak-check")
        key = created["key"]
        answers = []
        for auth in (
            basic_auth_header(USER, PASSWORD + "-wrong"),
            basic_auth_header(USER + "-wrong", PASSWORD),
            bearer_header(key + "x"),
            bearer_header(key),
            "Basic !!!not-base64",
        ):
            for path in ("/api/v1/jobs", "/api/v1/jobs/" + "0" * 32, "/nowhere"):
                answers.append((await balancer.call("GET", path, auth=auth))[2].decode())
            answers.append(
                (await balancer.call("POST", "/api/v1/jobs", auth=auth, data=b"{bad"))[2].decode()
            )
        await balancer.call("DELETE", f"/api/v1/apikeys/{created['id']}", auth=ADMIN_AUTH)
    assert any(e.get("event") == "apikey_created" for e in logs)
    secrets = [PASSWORD, key, key[len("cfk_") + 13 :], base64.b64encode(PASSWORD.encode()).decode()]
    haystack = "\n".join([caplog.text, *map(str, logs), *answers])
    for secret in secrets:
        assert secret not in haystack


def test_beyond_loopback_both_roles_refuse_to_start_without_credentials() -> None:
    public = ServerConfig(host="0.0.0.0", port=0)
    with pytest.raises(ConfigError, match="without credentials"):
        balancer_app(BalancerConfig(server=public))
    with pytest.raises(ConfigError, match="without credentials"):
        node_app(NodeConfig(server=public))
    insecure = ServerConfig(host="0.0.0.0", port=0, insecure=True)
    assert balancer_app(BalancerConfig(server=insecure)) is not None
    assert node_app(NodeConfig(server=insecure)) is not None


@pytest.mark.parametrize("role", [["balancer"], ["node", "--comfy-url", "http://127.0.0.1:1"]])
def test_the_cli_refuses_too(role: list[str]) -> None:
    env = {"API_USERNAME": "", "API_PASSWORD": "", "COMFYFLEET_INSECURE": ""}
    result = CliRunner().invoke(cli, [*role, "--host", "0.0.0.0", "--port", "0"], env=env)
    assert result.exit_code == 2
    assert "without credentials" in result.output
