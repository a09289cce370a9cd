"""The pure core: rules over a snapshot, the state machine (for, repeat, resolve, flapping),
grouping per receiver, and config loading. No I/O."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from comfyfleet.alerts.config import DEFAULT_RULES, AlertsConfig, Receiver, Rule
from comfyfleet.alerts.loading import alerts_config
from comfyfleet.alerts.model import Active, fingerprint
from comfyfleet.alerts.rules import (
    RETRIED,
    Counters,
    PoolView,
    Snapshot,
    ended_key,
    evaluate,
    restarts_key,
)
from comfyfleet.alerts.state import ALERTMANAGER_REFRESH_MS, advance, group
from comfyfleet.errors import ConfigError
from comfyfleet.models.node import NodeInfo, NodeState

NOW = 1_760_000_000_000


def snap(**kw: object) -> Snapshot:
    base: dict[str, object] = {"now_ms": NOW, "nodes": (), "pools": {},
                               "counters": Counters(NOW, {})}  # fmt: skip
    base.update(kw)
    return Snapshot(**base)  # type: ignore[arg-type]


def names(active: list[Active]) -> list[tuple[str, dict[str, str]]]:
    return [(a.alertname, {k: v for k, v in a.labels.items()
                           if k not in ("alertname", "severity")}) for a in active]  # fmt: skip


def run(s: Snapshot, base: Counters | None = None, **rules: Rule) -> list[Active]:
    cfg = AlertsConfig(rules={**DEFAULT_RULES, **rules})
    return evaluate(s, cfg, lambda _w: base or s.counters)


def test_node_rules_and_pools_without_ready_nodes() -> None:
    nodes = (
        NodeInfo(node_id="a", state=NodeState.LOST, last_seen_ms=NOW - 9000, pools=["gpu"]),
        NodeInfo(node_id="b", state=NodeState.UNHEALTHY, comfy_url="http://x:8188"),
        NodeInfo(node_id="c", state=NodeState.READY, pools=["default"]),
    )
    pools = {"default": PoolView(3), "gpu": PoolView(2), "idle": PoolView(0)}
    got = run(snap(nodes=nodes, pools=pools, lost_before=frozenset({"gone"})))
    assert names(got) == [
        ("NodeLost", {"node_id": "a"}),
        ("NodeLost", {"node_id": "gone"}),  # forgotten by the reaper, not back
        ("NodeUnhealthy", {"node_id": "b"}),
        ("PoolWithoutReadyNode", {"pool": "gpu"}),
    ]
    assert "9 s ago" in got[0].summary
    assert got[0].labels["severity"] == "critical"


def test_queue_wait_failure_ratio_retries_memory_restarts_webhooks() -> None:
    base = Counters(NOW - 300_000, {RETRIED: 10, ended_key("txt2img", "failed"): 1,
                                    restarts_key("n1"): 2})  # fmt: skip
    now = Counters(NOW, {
        RETRIED: 70,  # 60 in 5 min: 12 / min
        ended_key("txt2img", "failed"): 5, ended_key("txt2img", "succeeded"): 2,  # 4 of 6
        ended_key("solid", "failed"): 1, ended_key("solid", "succeeded"): 9,
        restarts_key("n1"): 6,
    })  # fmt: skip
    s = snap(
        nodes=(NodeInfo(node_id="n1", state=NodeState.READY),),
        pools={"default": PoolView(1, oldest_created_ms=NOW - 700_000)},
        counters=now, webhooks_pending=1500, redis_used_memory=95, redis_maxmemory=100,
    )  # fmt: skip
    got = {a.alertname: a for a in run(s, base)}
    assert set(got) == {"QueueWaitHigh", "JobFailureRatioHigh", "RetriesHigh", "WebhooksBacklog",
                        "RedisMemoryHigh", "ComfyRestarting"}  # fmt: skip
    assert got["QueueWaitHigh"].value == 700
    assert got["JobFailureRatioHigh"].labels["workflow"] == "txt2img"
    assert got["JobFailureRatioHigh"].value == pytest.approx(4 / 6)
    assert got["RetriesHigh"].value == pytest.approx(12)
    assert got["ComfyRestarting"].value == 4
    # below every threshold: nothing
    quiet = snap(counters=base, redis_maxmemory=0, redis_used_memory=10**9)
    assert run(quiet, base) == []


def test_a_counter_that_went_down_counts_from_zero() -> None:
    """A node restarted (its restart count starts over): growth is its new count."""
    assert Counters(2, {"x": 3}).since(Counters(1, {"x": 10}), "x") == 3


def test_fingerprints_are_stable_and_label_order_free() -> None:
    assert fingerprint({"a": "1", "b": "2"}) == fingerprint({"b": "2", "a": "1"})
    assert fingerprint({"a": "1"}) != fingerprint({"a": "2"})
    assert (
        fingerprint({"alertname": "NodeLost", "node_id": "n1"}) == "d1f86e01fb6c8a3d"
    )  # pinned: must not change


def lost(node: str) -> Active:
    return Active({"alertname": "NodeUnhealthy", "severity": "warning", "node_id": node}, "x")


def test_for_duration_then_firing_then_repeat_then_resolved() -> None:
    cfg = AlertsConfig(rules={**DEFAULT_RULES, "NodeUnhealthy": Rule(for_s=60)},
                       repeat_interval_s=3600, resolve_hold_s=0)  # fmt: skip
    r = advance({}, [lost("n1")], NOW, cfg)
    assert [s.status for s in r.states.values()] == ["pending"]
    assert r.notices == []
    r = advance(r.states, [lost("n1")], NOW + 59_999, cfg)
    assert r.notices == []
    r = advance(r.states, [lost("n1")], NOW + 60_000, cfg)
    assert [n.kind for n in r.notices] == ["firing"]
    r = advance(r.states, [lost("n1")], NOW + 60_000 + ALERTMANAGER_REFRESH_MS, cfg)
    assert [n.kind for n in r.notices] == ["refresh"]  # for Alertmanager only
    r = advance(r.states, [lost("n1")], NOW + 60_000 + 3_600_000, cfg)
    assert [n.kind for n in r.notices] == ["repeat"]
    r = advance(r.states, [], NOW + 3_700_000, cfg)
    assert [n.kind for n in r.notices] == ["resolved"]
    assert r.notices[0].ends_ms == NOW + 3_700_000
    assert r.states == {}
    assert len(r.forget) == 1


def test_a_pending_alert_that_clears_sends_nothing() -> None:
    cfg = AlertsConfig(rules={**DEFAULT_RULES, "NodeUnhealthy": Rule(for_s=60)})
    r = advance({}, [lost("n1")], NOW, cfg)
    r = advance(r.states, [], NOW + 1000, cfg)
    assert r.notices == []
    assert r.states == {}


def test_a_flapping_condition_is_one_alert() -> None:
    """Condition on/off every 10 s for 2 min with a 60 s resolve hold: one firing, and a
    single resolution once it stays off."""
    cfg = AlertsConfig(rules={**DEFAULT_RULES, "NodeUnhealthy": Rule(for_s=0)},
                       resolve_hold_s=60)  # fmt: skip
    states: dict = {}  # type: ignore[type-arg]
    kinds = []
    for step in range(12):
        active = [lost("n1")] if step % 2 == 0 else []
        r = advance(states, active, NOW + step * 10_000, cfg)
        states = {**r.states}
        kinds += [n.kind for n in r.notices if n.kind != "refresh"]
    assert kinds == ["firing"]
    for step in range(12, 20):
        r = advance(states, [], NOW + step * 10_000, cfg)
        states = {**r.states}
        kinds += [n.kind for n in r.notices if n.kind != "refresh"]
    assert kinds == ["firing", "resolved"]


def test_grouping_per_receiver_and_alertname_with_filters() -> None:
    cfg = AlertsConfig(rules={**DEFAULT_RULES, "NodeUnhealthy": Rule(for_s=0)}, resolve_hold_s=0)
    r = advance({}, [lost("n1"), lost("n2")], NOW, cfg)
    r2 = advance(r.states, [lost("n2")], NOW + 1, cfg)
    receivers = [
        Receiver(name="chat", kind="slack", url="http://x/", send_resolved=False),
        Receiver(name="am", kind="alertmanager", url="http://am:9093"),
        Receiver(name="pager", kind="webhook", url="http://x/", severities=("critical",)),
    ]
    first = group(r.notices, receivers, NOW)
    assert [(n.receiver, n.group, len(n.notices)) for n in first] == [
        ("chat", "NodeUnhealthy", 2), ("am", "NodeUnhealthy", 2)]  # fmt: skip
    assert len({n.id for n in first}) == 2
    resolved = group(r2.notices, receivers, NOW + 1)
    assert [(n.receiver, n.status) for n in resolved] == [("am", "resolved")]


def test_config_file_overrides_rules_and_adds_receivers(tmp_path: Path) -> None:
    path = tmp_path / "alerts.json"
    path.write_text(json.dumps({
        "rules": {"NodeUnhealthy": {"for_s": 30}, "RetriesHigh": {"enabled": False}},
        "receivers": [{"name": "ops", "kind": "feishu", "url": "https://open.feishu.cn/x",
                       "secret": "s3"}],
        "repeat_interval_s": 600,
    }))  # fmt: skip
    cfg = alerts_config(str(path), ["slack=https://hooks.slack.com/a", "slack=https://b/"])
    assert cfg.rule("NodeUnhealthy").for_s == 30
    assert cfg.rule("NodeUnhealthy").severity == "warning"  # default kept
    assert not cfg.rule("RetriesHigh").enabled
    assert [r.name for r in cfg.receivers] == ["ops", "slack", "slack-2"]
    assert cfg.repeat_interval_s == 600


@pytest.mark.parametrize(
    ("body", "flags", "says"),
    [
        ({"rules": {"NodeGone": {}}}, [], "unknown rules ['NodeGone']"),
        ({}, ["pager=http://x"], "--alert-receiver wants KIND=URL"),
        ({"receivers": [{"name": "m", "kind": "email"}]}, [], "email needs smtp_host"),
        ({"receivers": [{"name": "s", "kind": "slack", "url": "ftp://x"}]}, [], "http(s) url"),
        ({"interval_ms": 1}, [], "interval_ms"),
    ],
)
def test_bad_config_is_a_clear_error(
    tmp_path: Path, body: dict[str, object], flags: list[str], says: str
) -> None:
    path = tmp_path / "alerts.json"
    path.write_text(json.dumps(body))
    with pytest.raises(ConfigError, match=says.replace("(", r"\(").replace(")", r"\)")
                       .replace("[", r"\[").replace("]", r"\]")):  # fmt: skip
        alerts_config(str(path), flags)
