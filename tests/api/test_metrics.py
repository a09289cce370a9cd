"""/metrics with `--metrics`: open, Prometheus text, numbers that follow the fleet; without
it, the route does not exist (401 like any unknown path) and the document does not list it."""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator

import aiohttp
import pytest
from aiohttp.test_utils import TestServer

from comfyfleet.balancer.app import create_app as balancer_app
from comfyfleet.config import BalancerConfig, RedisConfig
from comfyfleet.web.metrics import Metric, render
from tests.api.conftest import ADMIN_AUTH, Role, server
from tests.support.waiting import until

# One sample line of the text format: name, optional {labels}, a number.
SAMPLE = re.compile(r'^([a-z_]+)(\{([a-z_]+="[^"]*",?)*\})? (-?[0-9.e+]+)$')


def parse(text: str) -> dict[str, float]:
    """`name{labels}` -> value, checking every line is a comment or a valid sample."""
    out = {}
    for line in text.splitlines():
        if line.startswith("# HELP ") or line.startswith("# TYPE "):
            continue
        match = SAMPLE.match(line)
        assert match, f"not a sample line: {line!r}"
        key, value = line.rsplit(" ", 1)
        out[key] = float(value)
    return out


async def scrape(role: Role) -> dict[str, float]:
    status, headers, body = await role.call("GET", "/metrics")  # no credentials: open
    assert status == 200, body
    assert headers["Content-Type"].startswith("text/plain; version=0.0.4")
    return parse(body.decode())


async def test_balancer_metrics_follow_the_queue_and_the_nodes(balancer: Role, node: Role) -> None:
    # The node fixture's node, once its heartbeat says ready.
    before = await until(lambda: scrape(balancer),
                         lambda m: m['comfyfleet_nodes{state="ready"}'] >= 1,
                         what="a ready node in the registry")  # fmt: skip
    job = {"workflow": "solid", "params": {"width": 16, "height": 16}, "pool": "metrics"}
    status, _, body = await balancer.call("POST", "/api/v1/jobs", auth=ADMIN_AUTH, json=job)
    assert status == 202, body
    job_id = json.loads(body)["id"]
    after = await scrape(balancer)
    enqueued = 'comfyfleet_jobs_total{event="enqueued"}'
    assert after[enqueued] == before.get(enqueued, 0) + 1
    assert 'comfyfleet_queue_depth{pool="default"}' in after  # always listed
    assert after['comfyfleet_queue_depth{pool="metrics"}'] == 1  # waiting; no node serves it
    nodes = json.loads((await balancer.call("GET", "/api/v1/nodes", auth=ADMIN_AUTH))[2])
    node_id = nodes["nodes"][0]["node_id"]
    assert after[f'comfyfleet_node_capacity{{node_id="{node_id}"}}'] >= 1
    _, _, text = await balancer.call("GET", "/metrics")
    assert job_id.encode() not in text  # counts only: nothing about any one job


async def test_node_metrics_say_its_state(node: Role) -> None:
    got = await until(lambda: scrape(node), lambda m: m["comfyfleet_node_comfy_healthy"] == 1,
                      what="a healthy node")  # fmt: skip
    assert got['comfyfleet_node_state{state="ready"}'] == 1
    assert got['comfyfleet_node_state{state="draining"}'] == 0
    assert got["comfyfleet_node_running"] == 0
    assert got["comfyfleet_node_capacity"] >= 1


@pytest.fixture
async def quiet_balancer(
    redis_config: RedisConfig, session: aiohttp.ClientSession
) -> AsyncIterator[Role]:
    app = balancer_app(BalancerConfig(server=server(metrics=False), redis=redis_config))
    async with TestServer(app, host="127.0.0.1") as srv:
        yield Role(app, str(srv.make_url("")).rstrip("/"), session)


async def test_without_the_flag_there_is_no_metrics_route(quiet_balancer: Role) -> None:
    status, _, _ = await quiet_balancer.call("GET", "/metrics")
    assert status == 401  # an unknown path, so a scan learns nothing
    status, _, _ = await quiet_balancer.call("GET", "/metrics", auth=ADMIN_AUTH)
    assert status == 404
    status, _, body = await quiet_balancer.call("GET", "/openapi.json", auth=ADMIN_AUTH)
    assert "/metrics" not in json.loads(body)["paths"]


def test_rendering_escapes_label_values() -> None:
    text = render([Metric("m", "gauge", "help", [({"a": 'x"y\\z\nw'}, 1.5), ({}, 2.0)])])
    assert text == (
        "# HELP m help\n# TYPE m gauge\n" 'm{a="x\\"y\\\\z\\nw"} 1.5\n' "m 2\n"
    )  # fmt: skip
