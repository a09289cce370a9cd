"""The alert state machine and grouping: pure functions of the last round's states, this
round's conditions and the clock (ms).

    (new) --condition--> pending --held for `for`--> firing --clear for resolve_hold--> (gone)
      pending --condition gone--> (gone, nothing sent)

A firing alert is notified when it fires, again every `repeat_interval_s` while it holds
(and every `alertmanager_refresh_ms` to Alertmanager receivers, which resolve alerts not
refreshed), and once when it resolves. A condition that clears and returns within
`resolve_hold_s` keeps its alert firing: a flapping condition is one alert, not a stream.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace

from comfyfleet.alerts.config import AlertsConfig, Receiver
from comfyfleet.alerts.model import Active, AlertState, Notice, Notification

# Alertmanager resolves an alert at its endsAt unless refreshed; we refresh this often (ms)
# and send endsAt = now + ALERTMANAGER_ENDS_FACTOR x this.
ALERTMANAGER_REFRESH_MS = 60_000
ALERTMANAGER_ENDS_FACTOR = 4


@dataclass(frozen=True)
class Round:
    """What one evaluation decided: the states to keep (by fingerprint), the fingerprints
    to forget, and the notices to send."""

    states: dict[str, AlertState]
    forget: list[str]
    notices: list[Notice]


def advance(
    previous: Mapping[str, AlertState], active: Sequence[Active], now: int, cfg: AlertsConfig
) -> Round:
    states: dict[str, AlertState] = {}
    notices: list[Notice] = []
    seen: set[str] = set()
    for cond in active:
        fp = cond.fingerprint
        if fp in seen:
            continue
        seen.add(fp)
        state, notice = _holds(previous.get(fp), cond, now, cfg)
        states[fp] = state
        if notice is not None:
            notices.append(notice)
    forget = []
    for fp, state in previous.items():
        if fp in seen:
            continue
        kept, notice = _cleared(state, now, cfg)
        if kept is None:
            forget.append(fp)
        else:
            states[fp] = kept
        if notice is not None:
            notices.append(notice)
    return Round(states, forget, notices)


def _holds(
    prev: AlertState | None, cond: Active, now: int, cfg: AlertsConfig
) -> tuple[AlertState, Notice | None]:
    """An alert whose condition holds this round."""
    for_ms = int(cfg.rule(cond.alertname).for_s * 1000)
    if prev is None:
        prev = AlertState(cond.labels, cond.summary, cond.value, "pending", since_ms=now)
    state = replace(prev, summary=cond.summary, value=cond.value, clear_ms=0)
    if state.status == "pending":
        if now - state.since_ms < for_ms:
            return state, None
        fired = replace(state, status="firing", fired_ms=now, notified_ms=now, refreshed_ms=now)
        return fired, Notice(fired, "firing")
    if now - state.notified_ms >= cfg.repeat_interval_s * 1000:
        state = replace(state, notified_ms=now, refreshed_ms=now)
        return state, Notice(state, "repeat")
    if now - state.refreshed_ms >= ALERTMANAGER_REFRESH_MS:
        state = replace(state, refreshed_ms=now)
        return state, Notice(state, "refresh")
    return state, None


def _cleared(
    state: AlertState, now: int, cfg: AlertsConfig
) -> tuple[AlertState | None, Notice | None]:
    """An alert whose condition is gone this round (or whose rule was turned off)."""
    if state.status == "pending":
        return None, None
    rule = cfg.rules.get(state.alertname)
    switched_off = rule is not None and not rule.enabled
    clear_ms = state.clear_ms or now
    if not switched_off and now - clear_ms < cfg.resolve_hold_s * 1000:
        held = replace(state, clear_ms=clear_ms)
        if now - held.refreshed_ms >= ALERTMANAGER_REFRESH_MS:
            held = replace(held, refreshed_ms=now)
            return held, Notice(held, "refresh")
        return held, None
    return None, Notice(state, "resolved", ends_ms=clear_ms)


def _wants(receiver: Receiver, notice: Notice) -> bool:
    if notice.kind == "refresh":
        return receiver.kind == "alertmanager"
    if notice.resolved and not receiver.send_resolved:
        return False
    severity = notice.alert.labels.get("severity", "")
    return not receiver.severities or severity in receiver.severities


def group(notices: Iterable[Notice], receivers: Iterable[Receiver], now: int) -> list[Notification]:
    """One notification per receiver and alertname with what that receiver wants to hear.
    Ids derive from the content and time, so they are unique per round and stable."""
    notices = list(notices)
    out = []
    for receiver in receivers:
        by_name: dict[str, list[Notice]] = {}
        for notice in notices:
            if _wants(receiver, notice):
                by_name.setdefault(notice.alert.alertname, []).append(notice)
        for name, grouped in sorted(by_name.items()):
            grouped.sort(key=lambda n: (n.resolved, n.alert.fingerprint))
            seed = "|".join([receiver.name, name, str(now)]
                            + [f"{n.alert.fingerprint}:{n.kind}" for n in grouped])  # fmt: skip
            nid = "alrt_" + hashlib.sha256(seed.encode()).hexdigest()[:24]
            out.append(Notification(nid, receiver.name, name, now, tuple(grouped)))
    return out
