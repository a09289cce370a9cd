"""The OpenAPI documents: every route is documented (walking `app.router`), every operation
is complete and its examples fit its schemas, and each workflow's params are a schema."""

from __future__ import annotations

import json
from typing import Any

import jsonschema_rs
import pytest

from comfyfleet.web.openapi import documented, routes_of
from tests.api.conftest import ADMIN_AUTH, Role

METHODS = ("get", "post", "put", "patch", "delete")


async def _doc(role: Role, auth: str | None = ADMIN_AUTH) -> dict[str, Any]:
    status, headers, body = await role.call("GET", "/openapi.json", auth=auth)
    assert status == 200
    assert headers["Content-Type"].startswith("application/json")
    doc: dict[str, Any] = json.loads(body)
    return doc


def _operations(doc: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    return [
        (method, path, op)
        for path, item in doc["paths"].items()
        for method, op in item.items()
        if method in METHODS
    ]


def _validator(doc: dict[str, Any], schema: dict[str, Any]) -> Any:
    # Resolve "#/components/..." refs against the document itself.
    return jsonschema_rs.validator_for({**schema, "components": doc["components"]})


@pytest.fixture(params=["balancer", "node"])
def role(request: pytest.FixtureRequest) -> Role:
    role: Role = request.getfixturevalue(request.param)
    return role


async def test_every_route_is_documented_and_nothing_else(role: Role) -> None:
    doc = await _doc(role)
    routes = routes_of(role.app)
    assert routes - documented(doc) == set(), "routes missing from the OpenAPI document"
    assert documented(doc) - routes == set(), "documented operations without a route"


async def test_every_operation_is_complete(role: Role) -> None:
    doc = await _doc(role)
    assert doc["openapi"].startswith("3.1")
    assert set(doc["components"]["securitySchemes"]) == {"basicAuth", "bearerAuth"}
    ids = [op["operationId"] for _, _, op in _operations(doc)]
    assert len(ids) == len(set(ids))
    for method, path, op in _operations(doc):
        where = f"{method.upper()} {path}"
        assert op["summary"], where
        assert op["description"], where
        statuses = set(op["responses"])
        assert any(s.startswith("2") for s in statuses), where
        if op["security"]:
            assert "401" in statuses, where
        for status, reply in op["responses"].items():
            if "$ref" in reply:  # a problem: application/problem+json with the Problem schema
                assert reply["$ref"] == f"#/components/responses/Problem{status}"
                continue
            for media, content in reply.get("content", {}).items():
                if media == "application/json":
                    assert "example" in content, f"{where} {status}: no example"
                    _validator(doc, content["schema"]).validate(content["example"])
        body = op.get("requestBody")
        if body:
            content = body["content"]["application/json"]
            assert content["examples"], f"{where}: no request example"
            assert {"400", "413", "422"} <= statuses, where
            check = _validator(doc, content["schema"])
            for name, example in content["examples"].items():
                assert check.is_valid(example["value"]), f"{where}: example {name}"


async def test_problem_responses_are_problem_json(role: Role) -> None:
    doc = await _doc(role)
    for name, reply in doc["components"]["responses"].items():
        assert list(reply["content"]) == ["application/problem+json"], name


async def test_each_workflow_has_its_params_schema(balancer: Role) -> None:
    doc = await _doc(balancer)
    schemas = doc["components"]["schemas"]
    assert schemas["Params_txt2img"]["properties"]["prompt"]["type"] == "string"
    body = doc["paths"]["/api/v1/jobs"]["post"]["requestBody"]["content"]["application/json"]
    choices = [c["$ref"].rsplit("/", 1)[1] for c in body["schema"]["oneOf"]]
    assert "JobRequest_txt2img" in choices
    assert "GraphJobRequest" in choices
    assert "txt2img" in body["examples"]
    params_ref = schemas["JobRequest_txt2img"]["properties"]["params"]["$ref"]
    assert params_ref.endswith("/Params_txt2img")


async def test_document_and_docs_need_credentials(role: Role) -> None:
    # The document names this fleet's workflows; the seed kept Swagger behind basic auth.
    for path in ("/openapi.json", "/docs", "/docs/swagger-ui.css"):
        status, headers, _ = await role.call("GET", path)
        assert status == 401, path
        assert "Basic" in headers["WWW-Authenticate"], path


async def test_docs_page_and_assets_come_from_the_role(role: Role) -> None:
    status, headers, page = await role.call("GET", "/docs", auth=ADMIN_AUTH)
    assert status == 200
    assert "connect-src 'self'" in headers["Content-Security-Policy"]
    assert b"http" not in page  # no absolute URL: nothing loads from elsewhere
    for asset in ("swagger-ui-bundle.js", "swagger-ui.css", "init.js"):
        status, _, body = await role.call("GET", f"/docs/{asset}", auth=ADMIN_AUTH)
        assert status == 200, asset
        assert body, asset
    for bad in ("..%2F..%2Fpyproject.toml", "index.html", "swagger-ui-bundle.js.map"):
        status, headers, _ = await role.call("GET", f"/docs/{bad}", auth=ADMIN_AUTH)
        assert status == 404, bad
        assert headers["Content-Type"] == "application/problem+json"
