"""Alerts in the balancer: every replica contends for the `alerts` leadership lease and the
holder runs the evaluator (alerts/evaluator.py); any replica answers `GET /api/v1/alerts`
(admin) from the state in Redis."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Literal

from aiohttp import web
from pydantic import BaseModel, Field

from comfyfleet.alerts.evaluator import Evaluator
from comfyfleet.alerts.send import Sender
from comfyfleet.alerts.snapshot import SnapshotReader
from comfyfleet.alerts.store import LEADER_NAME, AlertStore
from comfyfleet.balancer.appkeys import CONFIG, NODES, REDIS
from comfyfleet.store.keys import Keys
from comfyfleet.store.leader import LeaderLease, Leadership
from comfyfleet.tasks import stop
from comfyfleet.web.auth import require_admin
from comfyfleet.web.openapi import Op, Reply
from comfyfleet.web.responses import json_response

ALERTS = web.AppKey("alerts", AlertStore)
LEADERSHIP = web.AppKey("alerts_leadership", Leadership)
routes = web.RouteTableDef()


class AlertView(BaseModel):
    fingerprint: str
    alertname: str
    status: Literal["pending", "firing"]
    severity: str
    labels: dict[str, str]
    summary: str
    value: float
    since_ms: int = Field(description="when the condition began (ms since the epoch)")
    fired_ms: int = Field(description="when it fired (ms since the epoch); 0 while pending")


class AlertList(BaseModel):
    alerts: list[AlertView]
    evaluator: str | None = Field(description="the holder id of the evaluating balancer")
    pending_notifications: int


async def alerts_ctx(app: web.Application) -> AsyncIterator[None]:
    """Contend for the evaluator's lease for the app's life."""
    cfg = app[CONFIG]
    keys = Keys(cfg.redis.namespace)
    store = AlertStore(app[REDIS], keys)
    app[ALERTS] = store
    if not cfg.alerts.enabled:
        yield
        return
    secret = cfg.webhooks.secret.get_secret_value() if cfg.webhooks.secret else None
    sender = Sender(timeout_ms=cfg.alerts.timeout_ms, external_url=cfg.alerts.external_url,
                    webhook_secret=secret)  # fmt: skip
    evaluator = Evaluator(cfg.alerts, store, SnapshotReader(app[REDIS], keys, app[NODES]), sender)
    lease = LeaderLease(app[REDIS], keys, LEADER_NAME, ttl_ms=cfg.alerts.lease_ms)
    app[LEADERSHIP] = leadership = Leadership(lease, evaluator.run)
    task = asyncio.create_task(leadership.run(), name="alerts")
    yield
    await stop(task)
    await sender.close()


@routes.get("/api/v1/alerts")
async def list_alerts(request: web.Request) -> web.Response:
    require_admin(request)
    store = request.app[ALERTS]
    states = sorted((await store.states()).values(),
                    key=lambda s: (s.status != "firing", s.alertname, s.fingerprint))  # fmt: skip
    holder = await LeaderLease(store.redis, store.keys, LEADER_NAME, ttl_ms=1000).holder_of()
    views = [
        AlertView(fingerprint=s.fingerprint, alertname=s.alertname, status=s.status,
                  severity=s.labels.get("severity", ""), labels=dict(s.labels),
                  summary=s.summary, value=s.value, since_ms=s.since_ms, fired_ms=s.fired_ms)
        for s in states
    ]  # fmt: skip
    return json_response(
        AlertList(alerts=views, evaluator=holder, pending_notifications=await store.pending())
    )


ALERT_EXAMPLE = {
    "fingerprint": "3f2a9c1e0b4d5a6f",
    "alertname": "NodeLost",
    "status": "firing",
    "severity": "critical",
    "labels": {"alertname": "NodeLost", "severity": "critical", "node_id": "gpu-box-1-8101"},
    "summary": "node gpu-box-1-8101 stopped heartbeating (7 s ago); its jobs were requeued",
    "value": 7.0,
    "since_ms": 1_760_000_000_000,
    "fired_ms": 1_760_000_000_000,
}
OPS = [
    Op("GET", "/api/v1/alerts", "listAlerts", "List alerts",
       "Alerts firing now, then those pending (condition holds, `for` not yet over), as the "
       "evaluating balancer last decided. Admin only.", "alerts",
       {200: Reply("The alerts", AlertList, example={
           "alerts": [ALERT_EXAMPLE], "evaluator": "9c1e0b4d", "pending_notifications": 0})},
       errors=[503], auth="admin"),
]  # fmt: skip
