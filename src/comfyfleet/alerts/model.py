"""What an alert is, as data: a condition a rule found, an alert's state across rounds, and
the notices and notifications that leave the fleet. Pure; times in ms since the epoch."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

import orjson

Status = Literal["pending", "firing"]
NoticeKind = Literal["firing", "repeat", "refresh", "resolved"]


def fingerprint(labels: Mapping[str, str]) -> str:
    """A stable id of an alert: the same labels give the same fingerprint in every process
    and release (sha256 of the sorted labels, 16 hex digits)."""
    text = "\x1f".join(f"{k}={v}" for k, v in sorted(labels.items()))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


@dataclass(frozen=True)
class Active:
    """A rule's condition holding now. `labels` include alertname and severity; `value` is
    what crossed the threshold (in the rule's unit)."""

    labels: Mapping[str, str]
    summary: str
    value: float = 0.0

    @property
    def fingerprint(self) -> str:
        return fingerprint(self.labels)

    @property
    def alertname(self) -> str:
        return self.labels["alertname"]


@dataclass(frozen=True)
class AlertState:
    """An alert the evaluator tracks. `since_ms`: when its condition began; `fired_ms`: when
    it fired (0 while pending); `clear_ms`: when its condition cleared while firing (0:
    it holds); `notified_ms`: last notice to every receiver; `refreshed_ms`: last send to
    Alertmanager receivers (they resolve what is not refreshed)."""

    labels: Mapping[str, str]
    summary: str
    value: float
    status: Status
    since_ms: int
    fired_ms: int = 0
    clear_ms: int = 0
    notified_ms: int = 0
    refreshed_ms: int = 0

    @property
    def fingerprint(self) -> str:
        return fingerprint(self.labels)

    @property
    def alertname(self) -> str:
        return self.labels["alertname"]

    def to_json(self) -> bytes:
        return orjson.dumps({**self.__dict__, "labels": dict(self.labels)})

    @classmethod
    def from_json(cls, raw: bytes | str) -> AlertState:
        return cls(**orjson.loads(raw))


@dataclass(frozen=True)
class Notice:
    """One alert to tell receivers about. `kind`: firing (newly), repeat (still firing after
    the repeat interval), refresh (still firing, for Alertmanager only), resolved."""

    alert: AlertState
    kind: NoticeKind
    ends_ms: int = 0  # resolved: when; firing: 0

    @property
    def resolved(self) -> bool:
        return self.kind == "resolved"


@dataclass(frozen=True)
class Notification:
    """One message to one receiver: a group of notices sharing an alertname. `id` is the
    same on every delivery attempt (receivers drop duplicates on it)."""

    id: str
    receiver: str
    group: str
    created_ms: int
    notices: tuple[Notice, ...] = field(default_factory=tuple)

    @property
    def status(self) -> Literal["firing", "resolved"]:
        return "resolved" if all(n.resolved for n in self.notices) else "firing"

    def to_json(self) -> bytes:
        return orjson.dumps(
            {
                "id": self.id,
                "receiver": self.receiver,
                "group": self.group,
                "created_ms": self.created_ms,
                "notices": [
                    {"alert": {**n.alert.__dict__, "labels": dict(n.alert.labels)},
                     "kind": n.kind, "ends_ms": n.ends_ms}
                    for n in self.notices
                ],
            }
        )  # fmt: skip

    @classmethod
    def from_json(cls, raw: bytes | str) -> Notification:
        data: dict[str, Any] = orjson.loads(raw)
        notices = tuple(
            Notice(AlertState(**n["alert"]), n["kind"], n["ends_ms"]) for n in data["notices"]
        )
        return cls(data["id"], data["receiver"], data["group"], data["created_ms"], notices)
