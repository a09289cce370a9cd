"""Alert state and pending notifications in Redis (keys in store/keys.py).

- `commit` records one evaluation round in one fenced script (store/lua/alerts_commit.lua):
  the alert states, a counter sample for windowed rules, and the notifications it decided
  on. Only the current leader's token may commit, so a takeover neither loses a round's
  notifications nor queues them twice.
- Notifications are delivered from `{ns}:alerts:due` with the webhook queue's own scripts
  (webhook_claim/webhook_settle: a claim is a lease with a token, so a sender that dies
  mid-request only delays the notification), and retried with backoff from there.
Times in ms.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import orjson
import redis.asyncio as aioredis

from comfyfleet.alerts.model import AlertState, Notification
from comfyfleet.alerts.rules import Counters
from comfyfleet.store.keys import Keys
from comfyfleet.store.leader import FencedScript, Lease
from comfyfleet.store.scripts import NoArgs, Script, fields_of, guarded, read_lua, standalone, text
from comfyfleet.store.webhooks import DEAD_TTL_MS, ClaimArgs, Delivery, SettleArgs

LEADER_NAME = "alerts"


@dataclass(frozen=True)
class CommitArgs:
    now_ms: int
    sample: str  # JSON
    drop_before_ms: int
    notification_prefix: str
    states: list[list[str]]  # [fingerprint, state JSON]
    forget: list[str]
    notifications: list[dict[str, str | int]]  # id, receiver, event, body, max_attempts


class AlertStore:
    def __init__(self, redis: aioredis.Redis, keys: Keys) -> None:
        self.redis = redis
        self.keys = keys
        self._commit: FencedScript[CommitArgs] = FencedScript(redis, read_lua("alerts_commit"))
        self._claim: Script[ClaimArgs] = standalone(redis, "webhook_claim")
        self._settle: Script[SettleArgs] = standalone(redis, "webhook_settle")
        self._clock_now: Script[NoArgs] = standalone(redis, "clock_now", clock=True)

    @property
    def leader_key(self) -> str:
        return self.keys.leader(LEADER_NAME)

    @guarded
    async def states(self) -> dict[str, AlertState]:
        raw = await self.redis.hgetall(self.keys.alerts_state)
        return {text(k): AlertState.from_json(v) for k, v in raw.items()}

    @guarded
    async def samples(self) -> list[Counters]:
        """Kept counter samples, oldest first."""
        members: Any = await self.redis.zrange(self.keys.alerts_samples, 0, -1)
        out = []
        for m in members:
            data = orjson.loads(m)
            out.append(Counters(int(data["at_ms"]), data["values"]))
        return out

    @guarded
    async def commit(
        self,
        lease: Lease,
        *,
        now: int,
        sample: Counters,
        keep_samples_ms: int,
        states: dict[str, AlertState],
        forget: Sequence[str],
        notifications: Sequence[Notification],
        max_attempts: int,
    ) -> int:
        """Record a round (see alerts_commit.lua); NotLeader when `lease` lapsed."""
        args = CommitArgs(
            now_ms=now,
            sample=orjson.dumps({"at_ms": sample.at_ms, "values": sample.values}).decode(),
            drop_before_ms=now - keep_samples_ms,
            notification_prefix=self.keys.alert_prefix(),
            states=[[fp, state.to_json().decode()] for fp, state in states.items()],
            forget=list(forget),
            notifications=[
                {"id": n.id, "receiver": n.receiver, "event": f"alerts.{n.status}",
                 "body": n.to_json().decode(), "max_attempts": max_attempts}
                for n in notifications
            ],
        )  # fmt: skip
        keys = [self.keys.alerts_state, self.keys.alerts_samples, self.keys.alerts_due]
        return int(await self._commit(lease, self.leader_key, keys, args))

    @guarded
    async def claim(self, now: int, *, lease_ms: int, limit: int, token: str) -> list[Delivery]:
        """Lease up to `limit` due notifications until now + `lease_ms`."""
        args = ClaimArgs(now, now + lease_ms, limit, self.keys.alert_prefix(), token)
        out = []
        for flat in await self._claim([self.keys.alerts_due], args):
            pairs = dict(zip(flat[::2], flat[1::2], strict=True))
            body = pairs.pop(b"body", None) or pairs.pop("body", b"")
            out.append(Delivery.of(fields_of(pairs), body if isinstance(body, bytes)
                                   else body.encode()))  # fmt: skip
        return out

    async def _settle_as(self, d: Delivery, mode: str, now: int, when: int, error: str) -> bool:
        keys = [self.keys.alerts_due, self.keys.alert_prefix() + d.id, self.keys.alerts_dead]
        return int(await self._settle(keys, SettleArgs(d.claim, mode, now, when, error))) == 1

    @guarded
    async def done(self, d: Delivery, now: int) -> bool:
        return await self._settle_as(d, "done", now, 0, "")

    @guarded
    async def retry(self, d: Delivery, now: int, *, at_ms: int, error: str) -> bool:
        return await self._settle_as(d, "retry", now, at_ms, error[:500])

    @guarded
    async def give_up(self, d: Delivery, now: int, *, error: str) -> bool:
        return await self._settle_as(d, "dead", now, DEAD_TTL_MS, error[:500])

    @guarded
    async def pending(self) -> int:
        return int(await self.redis.zcard(self.keys.alerts_due))

    @guarded
    async def now_ms(self) -> int:
        """The fleet's clock (Redis TIME, lua/_clock.lua; ms): every decision of a round
        uses the one clock."""
        return int(await self._clock_now([self.keys.clock], NoArgs()))
