"""/metrics with `--metrics`: open, Prometheus text, numbers that follow the fleet; without
it, the route does not exist (401 like any unknown path) and the document does not list it."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path

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
    text = render([Metric("m", "gauge", "help", [({"a": 'x"y\\z\nw'}, 1.5), ({"a": ""}, 2.0)])])
    assert text == (
        "# HELP m help\n# TYPE m gauge\n" 'm{a="x\\"y\\\\z\\nw"} 1.5\n' 'm{a=""} 2.0\n'
    )  # fmt: skip


PROMTOOL = shutil.which("promtool")
_DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
DEPLOYED = {
    p.name: p.read_text() for p in (_DEPLOY / "prometheus" / "rules.yml",
                                    _DEPLOY / "grafana" / "comfyfleet.json")
}  # fmt: skip


def promtool_check(text: str) -> None:
    """`promtool check metrics` (Debian `prometheus`) accepts the exposition as it is."""
    if PROMTOOL is None:
        pytest.fail("promtool is not installed (apt-get install prometheus; .ci/run does)")
    done = subprocess.run([PROMTOOL, "check", "metrics"], input=text.encode(),
                          capture_output=True, timeout=60)  # fmt: skip
    assert done.returncode == 0, (done.stdout + done.stderr).decode()


async def test_job_latency_histograms_are_fleet_wide_and_promtool_clean(
    balancer: Role, node: Role
) -> None:
    await until(lambda: scrape(balancer), lambda m: m['comfyfleet_nodes{state="ready"}'] >= 1,
                what="a ready node")  # fmt: skip
    before = await scrape(balancer)
    e2e = 'comfyfleet_job_end_to_end_seconds_count{pool="default",workflow="solid"}'
    job = {"workflow": "solid", "params": {"width": 16, "height": 16}}
    status, _, body = await balancer.call("POST", "/api/v1/jobs?wait=30", auth=ADMIN_AUTH,
                                          json=job)  # fmt: skip
    assert status == 200, body
    assert json.loads(body)["status"] == "succeeded"
    after = await scrape(balancer)
    assert after[e2e] == before.get(e2e, 0) + 1
    labels = '{pool="default",workflow="solid"}'
    for name in ("comfyfleet_job_queue_wait_seconds", "comfyfleet_job_run_seconds",
                 "comfyfleet_job_attempts"):  # fmt: skip
        assert after[f"{name}_count{labels}"] >= 1
        inf = f'{name}_bucket{{le="+Inf",pool="default",workflow="solid"}}'
        assert after[inf] == after[f"{name}_count{labels}"]  # cumulative up to +Inf
    one = 'comfyfleet_job_attempts_bucket{le="1.0",pool="default",workflow="solid"}'
    assert after[one] - before.get(one, 0) == 1  # it took one attempt
    ended = 'comfyfleet_jobs_ended_total{pool="default",status="succeeded",workflow="solid"}'
    assert after[ended] == before.get(ended, 0) + 1
    assert "comfyfleet_logdy_dropped_lines_total" in after
    for role in (balancer, node):
        _, _, text = await role.call("GET", "/metrics")
        promtool_check(text.decode())


async def test_rules_and_dashboard_name_only_metrics_that_exist(balancer: Role, node: Role) -> None:
    """deploy/prometheus/rules.yml and the Grafana dashboard refer only to families the
    roles expose (a renamed metric would silently empty a panel or disarm a rule)."""
    families: set[str] = set()
    for role in (balancer, node):
        _, _, text = await role.call("GET", "/metrics")
        families |= {line.split()[2] for line in text.decode().splitlines()
                     if line.startswith("# TYPE ")}  # fmt: skip
    for path, text in DEPLOYED.items():
        named = set(re.findall(r"comfyfleet_[a-z_]+", text))
        bare = {re.sub(r"_(bucket|sum|count)$", "", n) for n in named}
        assert bare - families == set(), path
