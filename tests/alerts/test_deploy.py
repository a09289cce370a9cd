"""deploy/: the Prometheus rules pass `promtool check rules` (Debian `prometheus`) and are
the same alerts as the built-in rules (names, severities, `for` durations)."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from comfyfleet.alerts.config import DEFAULT_RULES

ROOT = Path(__file__).resolve().parents[2]
RULES = ROOT / "deploy" / "prometheus" / "rules.yml"
PROMTOOL = shutil.which("promtool")


def test_promtool_accepts_the_rules() -> None:
    if PROMTOOL is None:
        pytest.fail("promtool is not installed (apt-get install prometheus; .ci/run does)")
    done = subprocess.run([PROMTOOL, "check", "rules", str(RULES)], capture_output=True,
                          timeout=60)  # fmt: skip
    assert done.returncode == 0, (done.stdout + done.stderr).decode()
    assert f"SUCCESS: {len(DEFAULT_RULES)} rules found" in done.stdout.decode()


def _seconds(duration: str) -> float:
    match = re.fullmatch(r"(\d+)([smh])", duration)
    assert match, duration
    return int(match[1]) * {"s": 1, "m": 60, "h": 3600}[match[2]]


def test_the_rules_are_the_built_in_alerts() -> None:
    (group,) = yaml.safe_load(RULES.read_text())["groups"]
    rules = {r["alert"]: r for r in group["rules"]}
    assert set(rules) == set(DEFAULT_RULES)
    for name, rule in rules.items():
        default = DEFAULT_RULES[name]
        assert rule["labels"]["severity"] == default.severity, name
        assert _seconds(rule.get("for", "0s")) == default.for_s, name
        if default.threshold:
            threshold = f"{default.threshold:g}"
            assert threshold in rule["expr"], (name, threshold)


def test_the_prometheus_rules_fire_where_the_built_in_ones_do() -> None:
    """promtool's rule unit tests (tests/alerts/data/rules_test.yml) on sample series,
    scraped from two balancer replicas that report the same fleet."""
    if PROMTOOL is None:
        pytest.fail("promtool is not installed (apt-get install prometheus; .ci/run does)")
    tests = Path(__file__).parent / "data" / "rules_test.yml"
    done = subprocess.run([PROMTOOL, "test", "rules", str(tests)], capture_output=True,
                          timeout=60)  # fmt: skip
    assert done.returncode == 0, (done.stdout + done.stderr).decode()
    assert "SUCCESS" in done.stdout.decode()
