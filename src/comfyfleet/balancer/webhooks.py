"""Webhook delivery: every balancer replica runs one dispatcher over the queue in Redis.

Each round (see store/webhooks.py for the queue):
1. collect: jobs `finish()` recorded as ended get their terminal deliveries queued (the
   job's own `webhook_url`, and the fleet-wide URL when configured);
2. follow: jobs that opted into `state` / `progress` events get those queued (progress
   coalesced to the newest per `FOLLOW_INTERVAL_MS`);
3. send: due deliveries are claimed and POSTed, signed (webhook_signing.py), to targets
   that pass the SSRF policy again at connect time (webhook_targets.py). A 2xx answer ends
   a delivery; anything else retries after `retry_base_ms * 2**(attempt-1)` (capped at
   `retry_max_ms`, jittered to 50-100 %) until `max_attempts`, then it is dead (kept 7 d).

At-least-once: a replica that dies mid-request leaves its claim to lapse and another one
(or itself, restarted) sends again with the same `webhook-id`, which receivers dedupe on.
Messages about one job are not ordered (a progress event may arrive after the end).
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import random
import time
from collections.abc import AsyncIterator, Sequence
from datetime import UTC, datetime
from typing import Any

import aiohttp
import structlog
from aiohttp import web
from pydantic import ValidationError

from comfyfleet import __version__
from comfyfleet.balancer.appkeys import CONFIG, JOBS, REDIS
from comfyfleet.balancer.schemas import JobView
from comfyfleet.balancer.urls import listen_url
from comfyfleet.balancer.webhook_signing import headers, secret_key
from comfyfleet.balancer.webhook_targets import (
    GuardedResolver,
    TargetPolicy,
    TargetRefused,
    parse_networks,
)
from comfyfleet.clock import SYSTEM_CLOCK, Clock
from comfyfleet.config import WebhookConfig
from comfyfleet.errors import ComfyfleetError, ConfigError, ValidationFailed
from comfyfleet.models.job import Job, JobStatus
from comfyfleet.models.retry import Backoff
from comfyfleet.store import histograms
from comfyfleet.store.jobs import JobStore
from comfyfleet.store.keys import Keys
from comfyfleet.store.leader import LeaderLease, Leadership
from comfyfleet.store.webhooks import Delivery, NewDelivery, WebhookStore
from comfyfleet.tasks import Pacer, stop
from comfyfleet.web.redact import scrub
from comfyfleet.web.responses import dumps

log = structlog.get_logger(__name__)

# Ended jobs collected, deliveries sent, followed jobs looked at, per round.
COLLECT_BATCH = 100
SEND_BATCH = 16
FOLLOW_BATCH = 50
# How often a followed job's log is read (ms), and how many of its events per read.
FOLLOW_INTERVAL_MS = 1000
FOLLOW_READ = 500
# Progress and state messages are stale soon: at most this many attempts each.
FOLLOW_MAX_ATTEMPTS = 3
# A round that failed on Redis is retried after this long (s), doubling up to the cap.
ERROR_BACKOFF = Backoff(base_ms=500, cap_ms=10_000, jitter=False)
# Extra events a job may ask for beside its terminal state.
EXTRA_EVENTS = ("state", "progress")
USER_AGENT = f"comfyfleet-webhooks/{__version__}"
# The dispatcher's leadership lease (ms): a dead leader's deliveries resume elsewhere
# within about this long (their own claim deadlines hand them over too).
WEBHOOK_LEASE_MS = 5_000


def webhook_config(
    url: str | None,
    secret: str | None,
    allow: Sequence[str],
    max_attempts: int,
    retry_base_ms: int,
) -> WebhookConfig:
    """The CLI's webhook options as a WebhookConfig; ConfigError (never echoing the
    secret) when one is wrong."""
    parse_networks(allow)
    try:
        return WebhookConfig(url=url or None, secret=secret or None, allow=tuple(allow),
                             max_attempts=max_attempts, retry_base_ms=retry_base_ms)  # fmt: skip
    except ValidationError as exc:
        fields = ", ".join(f"--webhook-{'.'.join(map(str, e['loc']))}: {e['msg']}"
                           for e in exc.errors())  # fmt: skip
        raise ConfigError(fields.replace("_", "-")) from None


def _iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).isoformat().replace("+00:00", "Z")


def message(kind: str, at_ms: int, data: Any) -> bytes:
    """A message body: `{"type": kind, "timestamp": ISO 8601, "data": ...}`."""
    return dumps({"type": kind, "timestamp": _iso(at_ms), "data": data})


def follow_messages(
    job_id: str, events: Sequence[tuple[str, dict[str, Any]]], wanted: Sequence[str]
) -> tuple[list[tuple[str, dict[str, Any]]], bool]:
    """The (type, data) messages a batch of a job's events makes, and whether the batch
    holds the job's end (its own terminal message goes through the ended path). Pure."""
    out: list[tuple[str, dict[str, Any]]] = []
    latest_progress: dict[str, Any] | None = None
    ended = False
    for _sid, event in events:
        if event.get("type") == "state":
            status = str(event.get("status", ""))
            if status in {s.value for s in JobStatus if s.is_terminal}:
                ended = True
            elif "state" in wanted:
                data = scrub({k: v for k, v in event.items() if k != "type"})  # no host paths
                out.append((f"job.{status}", {"job_id": job_id, **data}))
        elif event.get("type") == "progress" and "progress" in wanted:
            latest_progress = event
    if latest_progress is not None and not ended:
        data = {k: latest_progress.get(k) for k in ("value", "max", "node")}
        out.append(("job.progress", {"job_id": job_id, **data}))
    return out, ended


class Webhooks:
    """What request handlers need: submit-time checks and the job's webhook record."""

    def __init__(self, cfg: WebhookConfig, store: WebhookStore, clock: Clock = SYSTEM_CLOCK):
        self.cfg = cfg
        self.store = store
        self.clock = clock
        self.policy = TargetPolicy(cfg.allow)

    async def check(self, url: str | None, events: Sequence[str]) -> None:
        """422 naming the field for a URL this fleet will not call."""
        if url is None:
            if events:
                raise ValidationFailed("webhook_events needs a webhook_url", field="webhook_events")
            return
        if self.cfg.secret is None:
            raise ValidationFailed(
                "webhooks are off: the balancer has no --webhook-secret", field="webhook_url"
            )
        await self.policy.check(url, "webhook_url")

    async def watch(self, job: Job, events: Sequence[str], base_url: str) -> None:
        await self.store.watch(job.id, events=events, base_url=base_url, now=self.clock.now_ms())


class Dispatcher:
    """Collects, follows and sends (see the module docstring). `run_once` is one round."""

    def __init__(
        self,
        store: WebhookStore,
        jobs: JobStore,
        cfg: WebhookConfig,
        *,
        base_url: str,
        clock: Clock = SYSTEM_CLOCK,
    ) -> None:
        if cfg.secret is None:
            raise ValueError("a dispatcher needs the signing secret")
        self.store = store
        self.jobs = jobs
        self.cfg = cfg
        self.base_url = base_url
        self.clock = clock
        self.policy = TargetPolicy(cfg.allow)
        self.rng = random.Random()
        self.retry = Backoff(cfg.retry_base_ms, cfg.retry_max_ms, jitter=cfg.retry_jitter)
        self._key = secret_key(cfg.secret.get_secret_value())
        self._session: aiohttp.ClientSession | None = None

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None:
            connector = aiohttp.TCPConnector(resolver=GuardedResolver(self.policy),
                                             limit=SEND_BATCH, force_close=True)  # fmt: skip
            self._session = aiohttp.ClientSession(
                connector=connector,
                timeout=aiohttp.ClientTimeout(total=self.cfg.timeout_ms / 1000),
                headers={"User-Agent": USER_AGENT},
                # A proxy from the environment would resolve the host itself, past the guard.
                trust_env=False,
            )
        return self._session

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def run(self) -> None:
        """Rounds until cancelled: at once after a busy round, else after `poll_ms`."""
        if self.cfg.url:
            await self._retrying(self.store.set_fleet_wide)
        pacer = Pacer(ERROR_BACKOFF)
        while True:
            try:
                busy = await self.run_once()
                pacer.reset()
            except ComfyfleetError as exc:
                log.warning("webhook_round_failed", error=exc.detail, retry_in_s=pacer.delay_s)
                await pacer.sleep()
                continue
            if not busy:
                await asyncio.sleep(self.cfg.poll_ms / 1000)

    async def _retrying(self, step: Any) -> None:
        pacer = Pacer(ERROR_BACKOFF)
        while True:
            try:
                await step()
                return
            except ComfyfleetError as exc:
                log.warning("webhook_setup_failed", error=exc.detail, retry_in_s=pacer.delay_s)
                await pacer.sleep()

    async def run_once(self) -> int:
        """One round; returns how much it did (0: idle)."""
        return await self.collect() + await self.follow() + await self.send_due()

    async def collect(self) -> int:
        done = 0
        for job_id in await self.store.ended(COLLECT_BATCH):
            job = await self.jobs.get(job_id)
            deliveries: list[NewDelivery] = []
            if job is not None and job.is_terminal:
                hook = await self.store.hook(job_id)
                base = hook.base_url if hook is not None and hook.base_url else self.base_url
                body = message(f"job.{job.status.value}", job.finished_ms or job.updated_ms,
                               JobView.of(job, base_url=base))  # fmt: skip
                targets = [u for u in (job.webhook_url, self.cfg.url) if u]
                deliveries = [NewDelivery(url, f"job.{job.status.value}", body,
                                          self.cfg.max_attempts) for url in targets]  # fmt: skip
            await self.store.collect(job_id, deliveries, self.clock.now_ms())
            done += 1
        return done

    async def follow(self) -> int:
        now = self.clock.now_ms()
        leased = await self.store.lease_following(now, FOLLOW_INTERVAL_MS * 5, FOLLOW_BATCH)
        for job_id in leased:
            hook, job = await self.store.hook(job_id), await self.jobs.get(job_id)
            if hook is None or job is None or not job.webhook_url:
                await self.store.followed(job_id, cursor="0", next_ms=None)
                continue
            events = await self.jobs.events(job_id, after=hook.cursor, count=FOLLOW_READ)
            messages, ended = follow_messages(job_id, events, hook.events)
            body_at = self.clock.now_ms()
            deliveries = [NewDelivery(job.webhook_url, kind, message(kind, body_at, data),
                                      FOLLOW_MAX_ATTEMPTS) for kind, data in messages]  # fmt: skip
            if deliveries:
                await self.store.add(job_id, deliveries, body_at)
            cursor = events[-1][0] if events else hook.cursor
            more = len(events) == FOLLOW_READ
            next_ms = None if ended else (body_at if more else body_at + FOLLOW_INTERVAL_MS)
            await self.store.followed(job_id, cursor=cursor, next_ms=next_ms)
        return len(leased)

    async def send_due(self) -> int:
        # The claim outlives the request's timeout, so a live sender never loses it.
        lease_ms = 2 * self.cfg.timeout_ms + 5_000
        claimed = await self.store.claim(self.clock.now_ms(), lease_ms=lease_ms, limit=SEND_BATCH)
        await asyncio.gather(*(self._deliver(d) for d in claimed))
        return len(claimed)

    async def _deliver(self, d: Delivery) -> None:
        started = time.monotonic()
        error, permanent = await self._post(d)
        await histograms.observe(self.store.redis, self.store.keys, "webhook",
                                 ("ok" if error is None else "error",),
                                 time.monotonic() - started)  # fmt: skip
        now = self.clock.now_ms()
        if error is None:
            await self.store.done(d, now)
            log.info("webhook_delivered", delivery=d.id, job_id=d.job_id, attempts=d.attempts)
        elif permanent or d.attempts >= d.max_attempts:
            await self.store.give_up(d, now, error=error)
            log.warning("webhook_given_up", delivery=d.id, job_id=d.job_id, error=error)
        else:
            at_ms = now + self.retry.delay_ms(d.attempts, self.rng)
            await self.store.retry(d, now, at_ms=at_ms, error=error)
            log.info("webhook_retry", delivery=d.id, job_id=d.job_id, error=error, at_ms=at_ms)

    async def _post(self, d: Delivery) -> tuple[str | None, bool]:
        """(None, _) when delivered; else (why, whether retrying is pointless)."""
        try:
            host = self.policy.parse(d.url).hostname or ""
            with contextlib.suppress(ValueError):
                # aiohttp connects to an IP literal without asking the resolver: check here.
                if not self.policy.address_allowed(ipaddress.ip_address(host)):
                    return f"target {host} is refused (not allowlisted)", False
            stamp = self.clock.now_ms() // 1000
            signed = headers(self._key, d.id, stamp, d.body)
            signed["Content-Type"] = "application/json"
            async with self._client().post(d.url, data=d.body, headers=signed,
                                           allow_redirects=False) as resp:  # fmt: skip
                if 200 <= resp.status < 300:
                    return None, False
                # 410 Gone: the receiver says this endpoint is no more (Standard Webhooks).
                return f"HTTP {resp.status}", resp.status == 410
        except TargetRefused as exc:
            return exc.detail, False
        except (aiohttp.ClientError, OSError, TimeoutError) as exc:
            return f"{type(exc).__name__}: {exc}"[:300], False


WEBHOOKS = web.AppKey("webhooks", Webhooks)


async def webhooks_ctx(app: web.Application) -> AsyncIterator[None]:
    """The handlers' `Webhooks`, and the dispatcher while a signing secret is configured."""
    cfg = app[CONFIG]
    store = WebhookStore(app[REDIS], Keys(cfg.redis.namespace))
    app[WEBHOOKS] = Webhooks(cfg.webhooks, store)
    task: asyncio.Task[None] | None = None
    dispatcher: Dispatcher | None = None
    if cfg.webhooks.secret is not None:
        base = listen_url(cfg)
        dispatcher = Dispatcher(store, app[JOBS], cfg.webhooks, base_url=base)
        # One dispatcher per fleet: every balancer process contends for its lease.
        lease = LeaderLease(app[REDIS], Keys(cfg.redis.namespace), "webhooks",
                            ttl_ms=WEBHOOK_LEASE_MS)  # fmt: skip
        run = dispatcher.run
        leadership = Leadership(lease, lambda _lease: run())
        task = asyncio.create_task(leadership.run(), name="webhooks")
    yield
    await stop(task)
    if dispatcher is not None:
        await dispatcher.close()
