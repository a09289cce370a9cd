"""Finding 6: inputs that made 500s. Non-ASCII digits in numeric path and query values,
values nested 1,000 deep inside valid bodies, and a URL whose DNS label is 64 characters."""

from __future__ import annotations

import base64

import pytest
from pydantic import SecretStr

from comfyfleet.balancer.webhook_signing import verify
from comfyfleet.config import InputUrlConfig, RedisConfig, WebhookConfig
from tests.security.fleet import fleet
from tests.security.graphs import DEEP, solid, with_deep

SECRET = "whsec_" + base64.b64encode(b"0123456789abcdef-sec").decode()
# Unicode digits that str.isdigit() accepts and int() refuses (or reads as another number).
JSON = {"Content-Type": "application/json"}
ODD_DIGITS = ["%C2%B2", "%E2%91%A0", "%D9%A3", "%EF%BC%91", "1%C2%B2"]


@pytest.mark.parametrize("raw", ODD_DIGITS)
async def test_an_output_index_in_other_digits_is_400(redis_config: RedisConfig, raw: str) -> None:
    async with fleet(redis_config) as f:
        _, job = await f.json("POST", "/api/v1/jobs", json={"graph": solid()})
        status, problem = await f.json("GET", f"/api/v1/jobs/{job['id']}/outputs/{raw}")
        assert status == 400, problem
        assert "index" in problem["detail"]


@pytest.mark.parametrize(
    ("method", "path", "name"),
    [("GET", "/api/v1/jobs?limit={raw}", "limit"),
     ("GET", "/api/v1/jobs?cursor={raw}", "cursor"),
     ("GET", "/api/v1/jobs/{job}?wait={raw}", "wait"),
     ("POST", "/api/v1/jobs?wait={raw}", "wait")],
)  # fmt: skip
async def test_numeric_query_values_in_other_digits_are_400(
    redis_config: RedisConfig, method: str, path: str, name: str
) -> None:
    async with fleet(redis_config) as f:
        _, job = await f.json("POST", "/api/v1/jobs", json={"graph": solid()})
        for raw in ODD_DIGITS:
            target = path.format(raw=raw, job=job["id"])
            body = {"graph": solid()} if method == "POST" else None
            status, problem = await f.json(method, target, json=body)
            assert status == 400, (raw, problem)
            assert name in problem["detail"]


async def test_node_history_max_items_in_other_digits_is_400(redis_config: RedisConfig) -> None:
    async with fleet(redis_config, node=True) as f:
        for raw in ODD_DIGITS:
            status, problem = await f.json("GET", f"/api/v1/comfy/history?max_items={raw}",
                                           url=f.node_url)  # fmt: skip
            assert status == 400, (raw, problem)
            assert "max_items" in problem["detail"]


async def test_a_value_1000_deep_inside_params_is_422(redis_config: RedisConfig) -> None:
    async with fleet(redis_config) as f:
        body = with_deep({"workflow": "solid", "params": {"color": DEEP}}, 1000)
        status, problem = await f.json("POST", "/api/v1/jobs", data=body, headers=JSON)
        assert status == 422, problem
        assert "params.color" in problem["detail"]


async def test_a_value_1000_deep_inside_a_graph_input_is_422(redis_config: RedisConfig) -> None:
    async with fleet(redis_config) as f:
        graph = solid()
        graph["1"]["inputs"]["width"] = DEEP
        body = with_deep({"graph": graph}, 1000)
        status, problem = await f.json("POST", "/api/v1/jobs", data=body, headers=JSON)
        assert status == 422, problem
        assert "graph.1.inputs.width" in problem["detail"]


async def test_a_value_just_inside_the_depth_cap_is_judged_on_its_merits(
    redis_config: RedisConfig,
) -> None:
    async with fleet(redis_config) as f:
        body = with_deep({"workflow": "solid", "params": {"color": DEEP}}, 50)
        status, problem = await f.json("POST", "/api/v1/jobs", data=body, headers=JSON)
        assert status == 422, problem
        assert problem["code"] == "param-invalid"


LONG_LABEL = "a" * 64


async def test_a_webhook_url_with_a_64_character_label_is_422(redis_config: RedisConfig) -> None:
    hooks = WebhookConfig(secret=SecretStr(SECRET))
    async with fleet(redis_config, webhooks=hooks) as f:
        for url in (f"http://{LONG_LABEL}.example.com/hook", f"https://x.{'b' * 300}.com/",
                    f"http://{LONG_LABEL}/"):  # fmt: skip
            body = {"graph": solid(), "webhook_url": url}
            status, problem = await f.json("POST", "/api/v1/jobs", json=body)
            assert status == 422, (url, problem)
            assert problem["field"] == "webhook_url"


async def test_an_input_url_with_a_64_character_label_is_422(redis_config: RedisConfig) -> None:
    async with fleet(redis_config, input_urls=InputUrlConfig(allow=("*.example.com",))) as f:
        url = f"http://{LONG_LABEL}.example.com/cat.png"
        status, problem = await f.json("POST", "/api/v1/inputs", json={"url": url})
        assert status == 422, problem
        assert problem["field"] == "url"


def test_a_webhook_timestamp_in_other_digits_does_not_verify() -> None:
    headers = {"webhook-id": "msg_1", "webhook-timestamp": "²", "webhook-signature": "v1,x"}
    assert verify(SECRET, headers, b"{}", now_s=2) is False
