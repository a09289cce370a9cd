"""Bearer API keys: several per fleet, each revocable, stored hashed.

A key reads `cfk_<id>_<secret>`: `id` (12 hex chars) names its record, so checking a key is
one read; `secret` is 256 random bits. Redis holds only sha256(key) -- a fast hash is enough
because the key is high-entropy (no dictionary to try), unlike a password. The key itself is
shown once, when created, and never stored, listed or logged.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import redis.asyncio as aioredis
from pydantic import BaseModel, Field

from comfyfleet.clock import SYSTEM_CLOCK, Clock
from comfyfleet.errors import StoreError
from comfyfleet.store.keys import Keys
from comfyfleet.store.limits import TenantLimits
from comfyfleet.store.scripts import Script, fields_of, guarded, standalone, text

KEY_PREFIX = "cfk_"
KEY_ID_PATTERN = r"^[0-9a-f]{12}$"
KEY_NAME_PATTERN = r"^[A-Za-z0-9_ .:@/-]{1,64}$"
# Stamp last use at most this often per key and process (ms): a busy key costs no extra write
# per request, and "last used" stays true to the minute.
TOUCH_EVERY_MS = 60_000
SECRET_BYTES = 32
# What a key may do beyond running jobs. "workflows": publish, roll back and retire
# workflows (otherwise the admin's alone).
Scope = Literal["workflows"]
SCOPES: tuple[Scope, ...] = ("workflows",)
_KEY_RE = re.compile(r"^cfk_([0-9a-f]{12})_([A-Za-z0-9_-]{43})$")


class ApiKeyInfo(BaseModel):
    """What may be shown about a key: never the key, never its hash. Times in ms since the
    epoch; `last_used_ms` None: never used."""

    id: str = Field(pattern=KEY_ID_PATTERN, examples=["3f9a0c1b2d4e"])
    name: str = Field(pattern=KEY_NAME_PATTERN, examples=["ci-pipeline"])
    created_ms: int
    last_used_ms: int | None = None
    scopes: list[Scope] = Field(default_factory=list, description="granted beyond running jobs")


class NewApiKey(ApiKeyInfo):
    key: str = Field(
        description="the bearer token; shown this once, store it now",
        examples=["cfk_3f9a0c1b2d4e_" + "x" * 43],
    )


class NewApiKeyRequest(BaseModel):
    name: str = Field(pattern=KEY_NAME_PATTERN, description="what the key is for")
    scopes: list[Scope] = Field(
        default_factory=list,
        max_length=len(SCOPES),
        description='"workflows": may publish, roll back and retire workflows',
    )
    limits: TenantLimits | None = Field(
        default=None, description="the key's tenant limits (see PATCH /api/v1/tenants)"
    )


class ApiKeyList(BaseModel):
    """Every live API key, oldest first (never the keys themselves)."""

    keys: list[ApiKeyInfo]


def digest(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def key_id_of(token: str) -> str | None:
    """The id inside a well-formed key, or None (anything else is not one of ours)."""
    match = _KEY_RE.match(token)
    return match.group(1) if match else None


@dataclass(frozen=True)
class CreateArgs:
    key_id: str
    name: str
    sha256: str
    now_ms: int
    scopes: str  # comma-separated, "" for none


@dataclass(frozen=True)
class RevokeArgs:
    key_id: str


@dataclass(frozen=True)
class TouchArgs:
    now_ms: int


class ApiKeyStore:
    """Create, check, list and revoke keys in one namespace."""

    def __init__(self, redis: aioredis.Redis, keys: Keys, clock: Clock = SYSTEM_CLOCK) -> None:
        self.redis = redis
        self.keys = keys
        self.clock = clock
        self._create: Script[CreateArgs] = standalone(redis, "apikey_create")
        self._revoke: Script[RevokeArgs] = standalone(redis, "apikey_revoke")
        self._touch: Script[TouchArgs] = standalone(redis, "apikey_touch")
        self._touched: dict[str, int] = {}

    @guarded
    async def create(self, name: str, scopes: Sequence[Scope] = ()) -> NewApiKey:
        now = self.clock.now_ms()
        granted = sorted(set(scopes))
        for _ in range(5):
            key_id = secrets.token_hex(6)
            key = f"{KEY_PREFIX}{key_id}_{secrets.token_urlsafe(SECRET_BYTES)}"
            args = CreateArgs(key_id, name, digest(key), now, ",".join(granted))
            if await self._create([self.keys.apikey(key_id), self.keys.apikeys], args):
                return NewApiKey(id=key_id, name=name, created_ms=now, key=key, scopes=granted)
        raise StoreError("could not draw a free API key id")  # 5 collisions of 48 random bits

    @guarded
    async def verify(self, token: str) -> ApiKeyInfo | None:
        """The key's record when `token` is a live key, else None. Compared in constant time."""
        key_id = key_id_of(token)
        if key_id is None:
            return None
        raw = await self.redis.hgetall(self.keys.apikey(key_id))
        fields = fields_of(raw)
        stored = fields.get("sha256", "")
        if not hmac.compare_digest(stored.encode(), digest(token).encode()) or not stored:
            return None
        info = _info(key_id, fields)
        now = self.clock.now_ms()
        if now - self._touched.get(key_id, 0) >= TOUCH_EVERY_MS:
            self._touched[key_id] = now
            await self._touch([self.keys.apikey(key_id)], TouchArgs(now))
        return info

    @guarded
    async def all(self) -> list[ApiKeyInfo]:
        """Every live key, oldest first."""
        members: Any = await self.redis.zrange(self.keys.apikeys, 0, -1)
        ids = [text(m) for m in members]
        async with self.redis.pipeline(transaction=False) as pipe:
            for key_id in ids:
                pipe.hgetall(self.keys.apikey(key_id))
            rows = await pipe.execute()
        return [_info(i, fields_of(r)) for i, r in zip(ids, rows, strict=True) if r]

    @guarded
    async def revoke(self, key_id: str) -> bool:
        """Revoke at once; False when no such key."""
        self._touched.pop(key_id, None)
        return bool(
            await self._revoke([self.keys.apikey(key_id), self.keys.apikeys], RevokeArgs(key_id))
        )


def _info(key_id: str, fields: dict[str, str]) -> ApiKeyInfo:
    last = fields.get("last_used_ms", "")
    return ApiKeyInfo(
        id=key_id,
        name=fields.get("name", ""),
        created_ms=int(fields.get("created_ms") or 0),
        last_used_ms=int(last) if last else None,
        scopes=[s for s in SCOPES if s in fields.get("scopes", "").split(",")],
    )
