"""`GET /api/v1/alerts` on an in-process balancer (admin only), and `comfyfleet alerts test`
against a loopback receiver."""

from __future__ import annotations

import asyncio
import json

from typer.testing import CliRunner

from comfyfleet.alerts.config import AlertsConfig
from comfyfleet.alerts.evaluator import Evaluator
from comfyfleet.alerts.send import Sender
from comfyfleet.alerts.snapshot import SnapshotReader
from comfyfleet.balancer.alerts_api import ALERTS, LEADERSHIP
from comfyfleet.balancer.appkeys import NODES
from comfyfleet.cli import app
from comfyfleet.models.node import NodeInfo
from comfyfleet.store.leader import Lease
from comfyfleet.store.nodes import NodeRegistry
from comfyfleet.web.auth import bearer_header
from tests.alerts.conftest import Listener
from tests.api.conftest import ADMIN_AUTH, Role, balancer, session  # noqa: F401 (fixtures)
from tests.support.waiting import until


async def _held(role: Role) -> Lease | None:
    return role.app[LEADERSHIP].held


async def test_the_alerts_list_shows_what_fires_to_the_admin_only(balancer: Role) -> None:  # noqa: F811
    lease = await until(lambda: _held(balancer), lambda held: held is not None,
                        what="the balancer to lead the evaluation")  # fmt: skip
    assert lease is not None
    store = balancer.app[ALERTS]
    registry = NodeRegistry(store.redis, store.keys)
    await registry.heartbeat(NodeInfo(node_id="gone-1"))
    # Heartbeats are stamped by Redis's clock: backdate the last-seen score itself.
    await store.redis.zadd(store.keys.nodes, {"gone-1": await store.now_ms() - 10_000})
    # one round, stepped here under the balancer's own lease
    reader = SnapshotReader(store.redis, store.keys, balancer.app[NODES])
    sender = Sender(timeout_ms=1000, external_url="", webhook_secret=None)
    await Evaluator(AlertsConfig(), store, reader, sender).evaluate(lease)
    await sender.close()
    status, _, body = await balancer.call("GET", "/api/v1/alerts", auth=ADMIN_AUTH)
    assert status == 200, body
    listed = json.loads(body)
    (alert,) = [a for a in listed["alerts"] if a["alertname"] == "NodeLost"]
    assert alert["status"] == "firing"
    assert alert["labels"] == {"alertname": "NodeLost", "severity": "critical",
                               "node_id": "gone-1"}  # fmt: skip
    assert alert["fired_ms"] > 0
    assert listed["evaluator"] == balancer.app[LEADERSHIP].lease.holder
    _, _, key_body = await balancer.call("POST", "/api/v1/apikeys", auth=ADMIN_AUTH,
                                         json={"name": "alerts-reader"})  # fmt: skip
    key = json.loads(key_body)["key"]
    status, _, _ = await balancer.call("GET", "/api/v1/alerts", auth=bearer_header(key))
    assert status == 403


async def cli(*args: str) -> tuple[int, str, str]:
    """Run `comfyfleet alerts test ARGS` in a worker thread (it runs its own event loop),
    so this loop keeps serving the receiver."""
    runner = CliRunner()
    result = await asyncio.to_thread(runner.invoke, app, ["alerts", "test", *args], env={
        "BALANCER_ALERTS_CONFIG": None, "BALANCER_ALERT_RECEIVER": None})  # fmt: skip
    return result.exit_code, result.stdout, result.stderr


async def test_alerts_test_sends_one_test_alert(listener: Listener) -> None:
    code, out, err = await cli("discord", "--alert-receiver", f"discord={listener.url}/d")
    assert code == 0, err
    assert "discord (discord): delivered" in out
    (got,) = listener.got
    assert "AlertTest" in got.json()["content"]
    listener.status = 500
    code, _, err = await cli("discord", "--alert-receiver", f"discord={listener.url}/d")
    assert code == 1
    assert "not delivered: HTTP 500" in err
    code, _, err = await cli("pager", "--alert-receiver", f"discord={listener.url}/d")
    assert code == 2
    assert "no receiver 'pager' (receivers: discord)" in err
