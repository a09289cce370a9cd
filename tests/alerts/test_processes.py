"""Alerts end to end with real processes on loopback: the Debian `prometheus-alertmanager`
receives NodeLost when a node process is SIGKILLed and its resolution when a node with that
id comes back (read back through Alertmanager's API); and SIGKILLing the evaluating
balancer hands evaluation to another replica with no notification lost or sent twice.
Waits are on conditions; rule evaluation is stepped by a 100 ms interval in the config."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import redis.asyncio as aioredis

from comfyfleet.alerts.store import LEADER_NAME
from comfyfleet.cli.fleet import Fleet, FleetSpec, Proc, wait_http_ok
from comfyfleet.config import RedisConfig
from comfyfleet.models.node import NodeInfo
from comfyfleet.redis_server import RedisServer, free_port
from comfyfleet.store.keys import Keys
from comfyfleet.store.leader import LeaderLease
from comfyfleet.store.nodes import NodeRegistry
from tests.alerts.conftest import SECRET, Listener
from tests.support.waiting import until

ALERTMANAGER = shutil.which("prometheus-alertmanager") or shutil.which("alertmanager")
FAST = {"interval_ms": 100, "lease_ms": 1000, "resolve_hold_s": 0, "timeout_ms": 1000,
        "retry_base_ms": 50, "retry_max_ms": 200}  # fmt: skip


def alerts_file(where: Path, receivers: list[dict[str, Any]]) -> Path:
    path = where / "alerts.json"
    path.write_text(json.dumps({**FAST, "receivers": receivers}))
    return path


@pytest.fixture(scope="module")
def alertmanager(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real Alertmanager on a free loopback port (clustering off); its base URL."""
    if ALERTMANAGER is None:
        pytest.fail("prometheus-alertmanager is not installed (apt-get install it; .ci/run does)")
    where = tmp_path_factory.mktemp("alertmanager")
    (where / "am.yml").write_text("route:\n  receiver: 'null'\nreceivers:\n  - name: 'null'\n")
    port = free_port("127.0.0.1")
    log = (where / "am.log").open("wb")
    proc = subprocess.Popen(
        [ALERTMANAGER, f"--config.file={where / 'am.yml'}", f"--storage.path={where}",
         f"--web.listen-address=127.0.0.1:{port}", "--cluster.listen-address="],
        stdout=log, stderr=log,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        wait_http_ok(f"{url}/-/ready", 30)
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        log.close()


async def am_alerts(http: aiohttp.ClientSession, url: str) -> list[dict[str, Any]]:
    async with http.get(f"{url}/api/v2/alerts") as resp:
        assert resp.status == 200
        alerts: list[dict[str, Any]] = await resp.json()
        return alerts


def node_lost_in(alerts: list[dict[str, Any]], node_id: str) -> list[dict[str, Any]]:
    return [a for a in alerts if a["labels"].get("alertname") == "NodeLost"
            and a["labels"].get("node_id") == node_id]  # fmt: skip


async def test_alertmanager_gets_node_lost_and_its_resolution(
    alertmanager: str, redis_config: RedisConfig, tmp_path: Path
) -> None:
    config = alerts_file(tmp_path, [{"name": "am", "kind": "alertmanager", "url": alertmanager}])
    spec = FleetSpec(
        nodes=1, balancer_port=0, first_node_port=0, redis_url=redis_config.url,
        namespace=redis_config.namespace, node_ms=5, step_ms=5, data_dir=tmp_path / "fleet",
        balancer_args=["--alerts-config", str(config)],
    )  # fmt: skip
    async with aiohttp.ClientSession() as http:
        with Fleet(spec) as fleet:
            fleet.wait_ready()
            assert node_lost_in(await am_alerts(http, alertmanager), "node-1") == []
            fleet.nodes[0].kill()  # SIGKILL: no goodbye, the heartbeat just stops
            (alert,) = await until(lambda: _lost(http, alertmanager), lambda a: len(a) == 1,
                                   timeout_s=40, what="NodeLost in Alertmanager")  # fmt: skip
            assert alert["labels"]["severity"] == "critical"
            assert alert["status"]["state"] == "active"
            assert "node node-1 stopped heartbeating" in alert["annotations"]["summary"]
            fleet.nodes[0].start()  # a node with the same id comes back
            # Alertmanager lists an alert until its endsAt; a firing one is sent with an
            # endsAt minutes ahead, so only the resolution can take it off the list now.
            await until(lambda: _lost(http, alertmanager), lambda a: a == [], timeout_s=40,
                        what="NodeLost resolved in Alertmanager")  # fmt: skip


async def _lost(http: aiohttp.ClientSession, url: str) -> list[dict[str, Any]]:
    return node_lost_in(await am_alerts(http, url), "node-1")


# -- takeover -----------------------------------------------------------------------------


def balancer(redis_config: RedisConfig, config: Path, where: Path, name: str) -> Proc:
    port = free_port("127.0.0.1")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("API_", "REDIS_"))}
    env.update(REDIS_URL=redis_config.url, COMFYFLEET_NAMESPACE=redis_config.namespace,
               BALANCER_WEBHOOK_SECRET=SECRET)  # fmt: skip
    proc = Proc(name, [sys.executable, "-m", "comfyfleet", "balancer", "--host", "127.0.0.1",
                       "--port", str(port), "--alerts-config", str(config)],
                env, where / f"{name}.log", f"http://127.0.0.1:{port}/healthz")  # fmt: skip
    proc.start()
    proc.wait_healthy()
    return proc


@pytest.fixture
async def client(redis_server: RedisServer) -> AsyncIterator[aioredis.Redis]:
    redis = aioredis.Redis.from_url(redis_server.url)
    yield redis
    await redis.aclose()


async def beat(client: aioredis.Redis, keys: Keys, node_id: str, ago_ms: int = 0) -> None:
    registry = NodeRegistry(client, keys)
    await registry.heartbeat(NodeInfo(node_id=node_id))
    # Heartbeats are stamped by Redis's clock: backdate the last-seen score itself.
    await client.zadd(keys.nodes, {node_id: await registry.now_ms() - ago_ms})


def received(listener: Listener) -> dict[tuple[str, str], set[str]]:
    """(node_id, status) -> the distinct notification ids that carried it."""
    out: dict[tuple[str, str], set[str]] = {}
    for req in listener.got:
        for alert in req.json()["alerts"]:
            key = (alert["labels"]["node_id"], alert["status"])
            out.setdefault(key, set()).add(req.headers["webhook-id"])
    return out


async def test_killing_the_evaluating_balancer_loses_and_repeats_nothing(
    redis_config: RedisConfig, client: aioredis.Redis, listener: Listener, tmp_path: Path
) -> None:
    keys = Keys(redis_config.namespace)
    config = alerts_file(tmp_path, [{"name": "hook", "kind": "webhook", "url": listener.url}])
    lease = LeaderLease(client, keys, LEADER_NAME, ttl_ms=1000)
    first = balancer(redis_config, config, tmp_path, "b1")
    second: Proc | None = None
    try:
        leader = await until(lease.holder_of, lambda h: h is not None, what="an evaluator")
        second = balancer(redis_config, config, tmp_path, "b2")
        await beat(client, keys, "n1", ago_ms=10_000)
        await until(lambda: _got(listener), lambda g: ("n1", "firing") in g, what="n1 firing")
        first.kill()
        await beat(client, keys, "n1")  # n1 comes back while nobody evaluates
        await beat(client, keys, "n2", ago_ms=10_000)  # n2 is lost meanwhile
        await until(lambda: _got(listener), lambda g: len(g) == 3, timeout_s=30,
                    what="n1's resolution and n2's alert from the new evaluator")  # fmt: skip
        assert await lease.holder_of() not in (None, leader)
        got = received(listener)
        assert set(got) == {("n1", "firing"), ("n1", "resolved"), ("n2", "firing")}
        assert all(len(ids) == 1 for ids in got.values()), got  # nothing sent twice
    finally:
        first.stop()
        if second is not None:
            second.stop()


async def _got(listener: Listener) -> dict[tuple[str, str], set[str]]:
    return received(listener)
