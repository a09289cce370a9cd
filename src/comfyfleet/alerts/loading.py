"""AlertsConfig from the CLI: `--alerts-config FILE` (JSON) and `--alert-receiver KIND=URL`.

The file (see README "Alerts" for an example):

    {"interval_ms": 15000, "repeat_interval_s": 14400, "resolve_hold_s": 60,
     "rules": {"NodeUnhealthy": {"for_s": 120}, "RetriesHigh": {"enabled": false}},
     "receivers": [{"name": "ops", "kind": "slack", "url": "https://hooks.slack.com/..."},
                   {"name": "am", "kind": "alertmanager", "url": "http://alertmanager:9093"}]}

A rule named in the file keeps the defaults of the fields the file leaves out. Flags add
receivers named after their kind (`slack`, `slack-2`, ...) beside the file's.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import orjson
from pydantic import ValidationError

from comfyfleet.alerts.config import DEFAULT_RULES, RECEIVER_KINDS, AlertsConfig
from comfyfleet.errors import ConfigError


def _receivers_of_flags(flags: Sequence[str], taken: set[str]) -> list[dict[str, Any]]:
    out = []
    for flag in flags:
        kind, sep, url = flag.partition("=")
        name: str
        if not sep or kind not in RECEIVER_KINDS or kind == "email":
            raise ConfigError(
                f"--alert-receiver wants KIND=URL with KIND one of "
                f"{', '.join(k for k in RECEIVER_KINDS if k != 'email')} (e-mail: use "
                f"--alerts-config), got {flag!r}"
            )
        name, n = kind, 1
        while name in taken:
            n += 1
            name = f"{kind}-{n}"
        taken.add(name)
        out.append({"name": name, "kind": kind, "url": url})
    return out


def _read_file(path: str) -> dict[str, Any]:
    try:
        data = orjson.loads(Path(path).read_bytes())
    except OSError as exc:
        raise ConfigError(f"--alerts-config {path}: {exc.strerror}") from None
    except orjson.JSONDecodeError as exc:
        raise ConfigError(f"--alerts-config {path}: not JSON ({exc})") from None
    if not isinstance(data, dict):
        raise ConfigError(f"--alerts-config {path}: expected a JSON object")
    return data


def alerts_config(
    path: str | None,
    receiver_flags: Sequence[str] = (),
    *,
    interval_ms: int | None = None,
    enabled: bool = True,
    external_url: str = "",
) -> AlertsConfig:
    """Merge the file, the flags and the defaults; ConfigError naming what is wrong."""
    data = _read_file(path) if path else {}
    rules = data.get("rules", {})
    if not isinstance(rules, dict):
        raise ConfigError("alerts config: `rules` must be an object of rule name -> settings")
    unknown = sorted(set(rules) - set(DEFAULT_RULES))
    if unknown:
        raise ConfigError(f"alerts config: unknown rules {unknown}; known: {sorted(DEFAULT_RULES)}")
    data["rules"] = {
        name: {**DEFAULT_RULES[name].model_dump(), **(rules.get(name) or {})}
        for name in DEFAULT_RULES
    }
    listed = list(data.get("receivers", []))
    taken = {str(r.get("name")) for r in listed if isinstance(r, dict)}
    data["receivers"] = listed + _receivers_of_flags(receiver_flags, taken)
    if interval_ms is not None:
        data["interval_ms"] = interval_ms
    data.setdefault("enabled", enabled)
    data.setdefault("external_url", external_url)
    try:
        return AlertsConfig.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(map(str, e['loc'])) or 'config'}: {e['msg']}" for e in exc.errors()
        )
        raise ConfigError(f"alerts config: {problems}") from None
