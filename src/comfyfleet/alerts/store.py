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
from comfyfleet.store.scripts import NoArgs, Script, guarded, read_lua, standalone, text
from comfyfleet.store.webhooks import DeliveryQueue

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


class AlertStore(DeliveryQueue):
    def __init__(self, redis: aioredis.Redis, keys: Keys) -> None:
        super().__init__(
            redis, due=keys.alerts_due, prefix=keys.alert_prefix(), dead=keys.alerts_dead
        )
        self.keys = keys
        self._commit: FencedScript[CommitArgs] = FencedScript(redis, read_lua("alerts_commit"))
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
    async def now_ms(self) -> int:
        """The fleet's clock (Redis TIME, lua/_clock.lua; ms): every decision of a round
        uses the one clock."""
        return int(await self._clock_now([self.keys.clock], NoArgs()))
