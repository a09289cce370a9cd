"""Alert settings: the rules' thresholds, the receivers, the pacing. Frozen pydantic models,
built by the CLI from flags and an optional JSON file (`--alerts-config`, see README
"Alerts"); `config.BalancerConfig.alerts` holds one. Times in seconds unless `_ms`.

Receivers come only from the operator (flags, env, the config file), never from an API
caller, so their URLs are trusted: unlike job webhooks they may point at private or
loopback hosts (an Alertmanager or a mail relay on the LAN is the usual case).
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, model_validator

Severity = Literal["critical", "warning", "info"]
ReceiverKind = Literal[
    "alertmanager", "webhook", "slack", "discord", "feishu", "dingtalk", "wecom", "email"
]
RECEIVER_KINDS: tuple[ReceiverKind, ...] = (
    "alertmanager", "webhook", "slack", "discord", "feishu", "dingtalk", "wecom", "email",
)  # fmt: skip


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Rule(_Frozen):
    """One rule's knobs. `threshold` and `window_s` mean what the rule's doc says (see
    alerts/rules.py); `for_s` is how long the condition must hold before it fires."""

    enabled: bool = True
    for_s: float = Field(default=0, ge=0)
    threshold: float = Field(default=0, ge=0)
    window_s: float = Field(default=0, ge=0)
    severity: Severity = "warning"


# The defaults; the config file's "rules" object overrides fields per rule name.
DEFAULT_RULES: dict[str, Rule] = {
    # A node stopped heartbeating (the reaper's lost bound, 6 s by default).
    "NodeLost": Rule(severity="critical"),
    # A node's ComfyUI is down or hung for longer than for_s.
    "NodeUnhealthy": Rule(for_s=300),
    # A pool has queued jobs and no ready node for for_s.
    "PoolWithoutReadyNode": Rule(for_s=120, severity="critical"),
    # The oldest queued job of a pool waited longer than threshold (s).
    "QueueWaitHigh": Rule(threshold=600, for_s=60),
    # Over window_s, failed / ended jobs of a workflow is above threshold (a ratio), once
    # at least 5 jobs of it ended in the window.
    "JobFailureRatioHigh": Rule(threshold=0.5, window_s=900),
    # Retries (attempts requeued) per minute over window_s above threshold.
    "RetriesHigh": Rule(threshold=10, window_s=300, for_s=120),
    # Webhook deliveries waiting above threshold for for_s.
    "WebhooksBacklog": Rule(threshold=1000, for_s=300),
    # Redis used memory above threshold x maxmemory (only when maxmemory is set).
    "RedisMemoryHigh": Rule(threshold=0.9, for_s=300, severity="critical"),
    # A node's ComfyUI restarted more than threshold times within window_s.
    "ComfyRestarting": Rule(threshold=3, window_s=900),
}
# Least ended jobs in the window before a failure ratio means anything.
FAILURE_RATIO_MIN_JOBS = 5


class Receiver(_Frozen):
    """Where notifications go. `url`: the webhook (for alertmanager its base URL, e.g.
    http://am:9093); `secret`: Feishu/DingTalk signing secret, or the generic webhook's
    whsec_ secret (default: the balancer's --webhook-secret). Email uses the smtp_* fields."""

    name: str = Field(pattern=r"^[A-Za-z0-9_.-]{1,64}$")
    kind: ReceiverKind
    url: str = ""
    secret: SecretStr | None = None
    send_resolved: bool = True
    # Only notifications of these severities (empty: all).
    severities: tuple[Severity, ...] = ()
    smtp_host: str = ""
    smtp_port: int = Field(default=587, ge=1, le=65535)
    smtp_starttls: bool = True
    smtp_username: str = ""
    smtp_password: SecretStr | None = None
    # A CA bundle (PEM file) to verify the mail server's certificate (""; the system's).
    smtp_ca_file: str = ""
    email_from: str = ""
    email_to: tuple[str, ...] = ()

    @model_validator(mode="after")
    def _complete(self) -> Receiver:
        if self.kind == "email":
            if not (self.smtp_host and self.email_from and self.email_to):
                raise ValueError(f"receiver {self.name}: email needs smtp_host, from and to")
        elif not self.url.startswith(("http://", "https://")):
            raise ValueError(f"receiver {self.name}: {self.kind} needs an http(s) url")
        return self


class AlertsConfig(_Frozen):
    """Evaluation (one balancer at a time, store/leader.py) and delivery settings."""

    enabled: bool = True
    # How often the leader evaluates the rules (ms).
    interval_ms: int = Field(default=15_000, ge=50)
    # Leadership lease of the evaluator (ms); a dead leader is replaced within about this.
    lease_ms: int = Field(default=30_000, ge=100)
    rules: dict[str, Rule] = Field(default_factory=lambda: dict(DEFAULT_RULES))
    receivers: tuple[Receiver, ...] = ()
    # A still-firing alert is notified again after this long (s).
    repeat_interval_s: float = Field(default=4 * 3600, gt=0)
    # A firing alert whose condition cleared resolves only once it stayed clear this long
    # (s), so a flapping condition makes one alert, not a message per flap.
    resolve_hold_s: float = Field(default=60, ge=0)
    # Delivery retries: first delay (ms), doubling up to retry_max_ms, at most max_attempts.
    retry_base_ms: int = Field(default=5_000, ge=1)
    retry_max_ms: int = Field(default=600_000, ge=1)
    max_attempts: int = Field(default=30, ge=1)
    timeout_ms: int = Field(default=10_000, ge=100)
    # Link shown in notifications (the balancer's public URL; "" none).
    external_url: str = ""

    @model_validator(mode="after")
    def _known_rules(self) -> AlertsConfig:
        unknown = sorted(set(self.rules) - set(DEFAULT_RULES))
        if unknown:
            raise ValueError(f"unknown alert rules {unknown}; known: {sorted(DEFAULT_RULES)}")
        names = [r.name for r in self.receivers]
        if len(names) != len(set(names)):
            raise ValueError(f"receiver names must be unique, got {names}")
        return self

    def rule(self, name: str) -> Rule:
        return self.rules.get(name, DEFAULT_RULES[name])

    def receiver(self, name: str) -> Receiver | None:
        return next((r for r in self.receivers if r.name == name), None)
