"""Each limit is defined once: the handler refuses just past it, accepts it, and the
OpenAPI document states the same number. The job error codes are one list, in the document."""

from __future__ import annotations

import json
from typing import Any

from comfyfleet.balancer import events_api, outputs_api
from comfyfleet.models.job import JobErrorCode
from comfyfleet.node import openapi_ops as node_ops
from comfyfleet.store.jobs import DEFAULT_PAGE, MAX_PAGE
from comfyfleet.store.keys import Keys
from comfyfleet.store.tenants import TenantStore
from tests.api.conftest import ADMIN_AUTH, Role


async def _doc(role: Role) -> dict[str, Any]:
    status, _, body = await role.call("GET", "/openapi.json", auth=ADMIN_AUTH)
    assert status == 200
    doc: dict[str, Any] = json.loads(body)
    return doc


def _param(doc: dict[str, Any], path: str, name: str) -> dict[str, Any]:
    params = doc["paths"][path]["get"]["parameters"]
    schema: dict[str, Any] = next(p["schema"] for p in params if p["name"] == name)
    return schema


async def _status(role: Role, path: str) -> int:
    status, _, _ = await role.call("GET", path, auth=ADMIN_AUTH)
    return status


async def test_the_page_size_limit_is_the_documented_one(balancer: Role) -> None:
    schema = _param(await _doc(balancer), "/api/v1/jobs", "limit")
    assert (schema["maximum"], schema["default"]) == (MAX_PAGE, DEFAULT_PAGE)
    assert await _status(balancer, f"/api/v1/jobs?limit={MAX_PAGE}") == 200
    assert await _status(balancer, f"/api/v1/jobs?limit={MAX_PAGE + 1}") == 400


async def test_the_output_index_limit_is_the_documented_one(balancer: Role) -> None:
    path = "/api/v1/jobs/{job_id}/outputs/{index}"
    schema = _param(await _doc(balancer), path, "index")
    assert schema["maximum"] == outputs_api.MAX_OUTPUT_INDEX
    status, _, body = await balancer.call(
        "POST", "/api/v1/jobs", auth=ADMIN_AUTH, json={"workflow": "solid", "params": {}}
    )
    assert status == 202, body
    base = f"/api/v1/jobs/{json.loads(body)['id']}/outputs/"
    assert await _status(balancer, base + str(outputs_api.MAX_OUTPUT_INDEX)) == 404
    assert await _status(balancer, base + str(outputs_api.MAX_OUTPUT_INDEX + 1)) == 400


async def test_the_wait_limit_is_the_documented_one(balancer: Role) -> None:
    schema = _param(await _doc(balancer), "/api/v1/jobs/{job_id}", "wait")
    assert schema["maximum"] == events_api.MAX_WAIT_S
    assert await _status(balancer, f"/api/v1/jobs/nosuchjob?wait={events_api.MAX_WAIT_S}") == 404
    assert await _status(balancer, f"/api/v1/jobs/x?wait={events_api.MAX_WAIT_S + 1}") == 400


async def test_the_history_limit_of_a_node_is_the_documented_one(node: Role) -> None:
    schema = _param(await _doc(node), "/api/v1/comfy/history", "max_items")
    assert schema["maximum"] == node_ops.MAX_HISTORY_ITEMS
    assert schema["default"] == node_ops.DEFAULT_HISTORY_ITEMS
    limit = node_ops.MAX_HISTORY_ITEMS
    assert await _status(node, f"/api/v1/comfy/history?max_items={limit}") == 200
    assert await _status(node, f"/api/v1/comfy/history?max_items={limit + 1}") == 400


async def test_the_job_error_codes_are_one_list_in_the_document(balancer: Role) -> None:
    schemas = (await _doc(balancer))["components"]["schemas"]
    assert schemas["JobErrorCode"]["enum"] == [code.value for code in JobErrorCode]
    assert schemas["JobError"]["properties"]["code"] == {
        "$ref": "#/components/schemas/JobErrorCode"
    }
    # One spelling: snake_case, as the README lists them.
    assert all(code.value.replace("_", "").isalpha() for code in JobErrorCode)
    assert all(code.value.islower() for code in JobErrorCode)


async def test_a_tenant_past_max_queued_gets_429_naming_the_limit(
    balancer: Role, redis_client: Any, redis_config: Any
) -> None:
    tenants = TenantStore(redis_client, Keys(redis_config.namespace))
    await tenants.configure("admin", max_queued=1)
    graph = {"1": {"class_type": "EmptyImage", "inputs": {}}}
    status, _, _ = await balancer.call("POST", "/api/v1/jobs", ADMIN_AUTH, json={"graph": graph})
    assert status == 202
    status, headers, body = await balancer.call(
        "POST", "/api/v1/jobs", ADMIN_AUTH, json={"graph": graph}
    )
    problem = json.loads(body)
    assert status == 429
    assert headers["Retry-After"].isdigit()
    assert (problem["code"], problem["limit"]) == ("quota-exceeded", "max_queued")
