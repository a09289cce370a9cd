"""The alert evaluator: the singleton one balancer runs while it holds the `alerts`
leadership lease (store/leader.py).

Each round (`evaluate`): read a snapshot of the fleet, run the rules, advance the state
machine, group the notices per receiver, and commit all of it in one fenced script
(alerts/store.py). Between rounds (`deliver`): claim due notifications and send them,
retrying failures with doubling, jittered delays from Redis. A takeover mid-round commits
nothing twice (the fence refuses the old leader) and loses nothing (the new leader reads
the committed state and the queue); a notification whose sender died mid-request is sent
again with the same id when its claim lapses.
"""

from __future__ import annotations

import asyncio
import random
import time
import uuid

import structlog

from comfyfleet.alerts.config import AlertsConfig
from comfyfleet.alerts.model import AlertState, Notification
from comfyfleet.alerts.rules import Counters, Snapshot, evaluate
from comfyfleet.alerts.send import Outcome, Sender
from comfyfleet.alerts.snapshot import SnapshotReader
from comfyfleet.alerts.state import Round, advance, group
from comfyfleet.alerts.store import AlertStore
from comfyfleet.clock import Clock
from comfyfleet.errors import StoreError
from comfyfleet.models.retry import Backoff
from comfyfleet.store import histograms
from comfyfleet.store.leader import Lease, NotLeader
from comfyfleet.store.webhooks import Delivery

log = structlog.get_logger(__name__)

SEND_BATCH = 16
# A lost node the reaper has forgotten (after 10 min) keeps its NodeLost alert until a
# node with its id heartbeats again, or for this long after it fired (ms): a box taken
# away for good without a clean shutdown stops alerting after a day.
FORGOTTEN_NODE_ALERT_MS = 24 * 3600 * 1000
# How often due notifications are looked for between rounds (s).
DELIVER_POLL_S = 0.5


class Evaluator:
    def __init__(
        self,
        cfg: AlertsConfig,
        store: AlertStore,
        reader: SnapshotReader,
        sender: Sender,
        *,
        clock: Clock | None = None,
        jitter: bool = True,
    ) -> None:
        self.cfg = cfg
        self.store = store
        self.reader = reader
        self.sender = sender
        self.clock = clock  # None: Redis's clock
        self.rng = random.Random()
        self.retry = Backoff(cfg.retry_base_ms, cfg.retry_max_ms, jitter=jitter)

    async def now_ms(self) -> int:
        return self.clock.now_ms() if self.clock is not None else await self.store.now_ms()

    async def run(self, lease: Lease) -> None:
        """Rounds every `interval_ms`, delivering in between, while `lease` is held."""
        while True:
            try:
                await self.evaluate(lease)
            except NotLeader:
                log.warning("alerts_not_leader", token=lease.token)
                return
            except StoreError as exc:
                log.warning("alerts_round_failed", error=exc.detail)
            deadline = time.monotonic() + self.cfg.interval_ms / 1000
            while (left := deadline - time.monotonic()) > 0:
                try:
                    sent = await self.deliver()
                except StoreError as exc:
                    log.warning("alerts_delivery_failed", error=exc.detail)
                    sent = 0
                if not sent:
                    await asyncio.sleep(min(left, DELIVER_POLL_S))

    async def evaluate(self, lease: Lease) -> Round:
        """One round, committed under `lease` (NotLeader if it lapsed)."""
        now = await self.now_ms()
        previous = await self.store.states()
        snap = await self.reader.read(now, _lost_before(previous, now))
        samples = await self.store.samples()
        active = evaluate(snap, self.cfg, lambda window_s: _baseline(samples, snap, window_s))
        decided = advance(previous, active, now, self.cfg)
        notifications = group(decided.notices, self.cfg.receivers, now)
        queued = await self.store.commit(
            lease, now=now, sample=snap.counters, keep_samples_ms=self._keep_samples_ms(),
            states=decided.states, forget=decided.forget, notifications=notifications,
            max_attempts=self.cfg.max_attempts,
        )  # fmt: skip
        for notice in decided.notices:
            if notice.kind in ("firing", "resolved"):
                alert = notice.alert
                log.info("alert_" + notice.kind, fingerprint=alert.fingerprint,
                         labels=dict(alert.labels), summary=alert.summary)  # fmt: skip
        if queued:
            log.info("alert_notifications_queued", count=queued)
        return decided

    def _keep_samples_ms(self) -> int:
        longest = max((r.window_s for r in self.cfg.rules.values()), default=0)
        return int(longest * 1000) + 2 * self.cfg.interval_ms

    async def deliver(self) -> int:
        """Send the due notifications once each; how many were tried."""
        now = await self.now_ms()
        token = uuid.uuid4().hex
        claimed = await self.store.claim(now, lease_ms=self.cfg.timeout_ms * 2 + 1000,
                                         limit=SEND_BATCH, token=token)  # fmt: skip
        await asyncio.gather(*(self._deliver_one(d) for d in claimed))
        return len(claimed)

    async def _deliver_one(self, d: Delivery) -> None:
        receiver = self.cfg.receiver(d.url)
        n = Notification.from_json(d.body)
        if receiver is None:
            outcome = Outcome(False, f"receiver {d.url!r} is no longer configured", retry=False)
        else:
            started = time.monotonic()
            outcome = await self.sender.send(n, receiver, await self.now_ms())
            await histograms.observe(self.store.redis, self.store.keys, "alert",
                                     (receiver.kind, "ok" if outcome.ok else "error"),
                                     time.monotonic() - started)  # fmt: skip
        now = await self.now_ms()
        if outcome.ok:
            await self.store.done(d, now)
            log.info("alert_delivered", notification=d.id, receiver=d.url, attempts=d.attempts)
        elif not outcome.retry or d.attempts >= d.max_attempts:
            await self.store.give_up(d, now, error=outcome.error)
            log.warning("alert_given_up", notification=d.id, receiver=d.url, error=outcome.error)
        else:
            at = now + self.retry.delay_ms(d.attempts, self.rng)
            await self.store.retry(d, now, at_ms=at, error=outcome.error)
            log.warning("alert_delivery_retry", notification=d.id, receiver=d.url,
                        error=outcome.error, retry_at_ms=at)  # fmt: skip


def _lost_before(previous: dict[str, AlertState], now: int) -> frozenset[str]:
    """Nodes whose NodeLost alert stays while the reaper has forgotten them."""
    return frozenset(
        s.labels.get("node_id", "")
        for s in previous.values()
        if s.alertname == "NodeLost" and now - (s.fired_ms or s.since_ms) < FORGOTTEN_NODE_ALERT_MS
    )


def _baseline(samples: list[Counters], snap: Snapshot, window_s: float) -> Counters:
    """The kept sample closest to `window_s` before now (never newer), or the oldest kept;
    the snapshot's own counters when none is kept yet (no growth)."""
    cutoff = snap.now_ms - int(window_s * 1000)
    older = [s for s in samples if s.at_ms <= cutoff]
    if older:
        return older[-1]
    return samples[0] if samples else snap.counters
