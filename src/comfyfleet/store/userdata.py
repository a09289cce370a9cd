"""The editor's user data and settings, per principal, in Redis (so they survive balancer
restarts and are the same on every replica).

ComfyUI keeps these as files under `user/<user>/` (`app/user_manager.py`): saved workflows
in `workflows/*.json`, `comfy.settings.json`, keybindings, templates. The fleet keeps each
principal's files in one hash (path -> bytes) with a second hash of their sizes and times
for listings, changed together by the `userdata_*` scripts; settings are a hash of JSON
values. A principal is its `Principal.label` ("admin", "anonymous", "apikey:<id>"), so
two API keys never see each other's files.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import orjson
import redis.asyncio as aioredis

from comfyfleet.errors import BadRequest, ComfyfleetError, Conflict, NotFound
from comfyfleet.store.keys import Keys
from comfyfleet.store.scripts import Script, fields_of, guarded, standalone, text

# Bounds of one principal's user data: a file (bytes), the number of files, a path
# (characters), a settings write (ids). A saved workflow is tens of KB; these leave room.
MAX_FILE_BYTES = 4 * 1024 * 1024
MAX_FILES = 2_000
MAX_PATH = 512
MAX_SETTINGS = 2_000
# What a path segment may hold: printable, no separators, no Windows-reserved characters
# (ComfyUI refuses those too when it writes a file).
_SEGMENT = re.compile(r'^[^\x00-\x1f\x7f/\\:*?"<>|]+$')


class FilesFull(ComfyfleetError):
    status = 507
    code = "userdata-full"
    title = "Too many user data files"


@dataclass(frozen=True)
class FileInfo:
    """One stored file: `path` relative to the principal's root, `size` in bytes, times in
    ms since the epoch (Redis's clock)."""

    path: str
    size: int
    created_ms: int
    modified_ms: int


@dataclass(frozen=True)
class PutArgs:
    path: str
    overwrite: bool
    max_files: int


@dataclass(frozen=True)
class MoveArgs:
    source: str
    dest: str
    overwrite: bool


@dataclass(frozen=True)
class DeleteArgs:
    path: str


def clean_path(raw: str, what: str = "file") -> str:
    """`raw` as a stored path (segments joined by "/"), or BadRequest naming the problem.

    No absolute path, no empty, "." or ".." segment, no backslash or control character:
    the same paths ComfyUI would accept inside a user's folder, checked without a file
    system."""
    if not raw or len(raw) > MAX_PATH:
        raise BadRequest(f"{what}: a path of 1 to {MAX_PATH} characters is needed", field=what)
    segments = raw.split("/")
    for segment in segments:
        if segment in ("", ".", "..") or not _SEGMENT.match(segment):
            raise BadRequest(
                f"{what}: {raw!r} is not a relative path of plain names "
                "(no '..', empty segment, backslash or control character)",
                field=what,
            )
    return "/".join(segments)


def _info(path: str, raw: Any) -> FileInfo:
    meta = orjson.loads(raw)
    return FileInfo(path, int(meta["size"]), int(meta["created_ms"]), int(meta["modified_ms"]))


def _refused(reply: Any) -> str | None:
    """The refusal word a userdata script answered, or None when it answered meta JSON."""
    value = text(reply)
    return None if value.startswith("{") else value


class UserDataStore:
    """Files and settings of every principal in one namespace."""

    def __init__(self, redis: aioredis.Redis, keys: Keys) -> None:
        self.redis = redis
        self.keys = keys
        self._put: Script[PutArgs] = standalone(redis, "userdata_put")
        self._move: Script[MoveArgs] = standalone(redis, "userdata_move")
        self._delete: Script[DeleteArgs] = standalone(redis, "userdata_delete")

    def _keys(self, principal: str) -> list[str]:
        return [self.keys.userdata(principal), self.keys.userdata_meta(principal)]

    @guarded
    async def list(
        self, principal: str, folder: str = "", *, recurse: bool = True
    ) -> list[FileInfo]:
        """Files under `folder` ("" for all), paths relative to the principal's root, sorted.
        Without `recurse`, only the folder's own files."""
        prefix = folder.rstrip("/") + "/" if folder else ""
        raw = await self.redis.hgetall(self.keys.userdata_meta(principal))
        found = []
        for key, meta in raw.items():
            path = text(key)
            if not path.startswith(prefix):
                continue
            if not recurse and "/" in path[len(prefix) :]:
                continue
            found.append(_info(path, meta))
        return sorted(found, key=lambda f: f.path)

    @guarded
    async def get(self, principal: str, path: str) -> bytes:
        """The file's bytes; NotFound when there is none."""
        body = await self.redis.hget(self.keys.userdata(principal), path)
        if body is None:
            raise NotFound(f"no user data file {path!r}")
        return body if isinstance(body, bytes) else body.encode()

    @guarded
    async def put(self, principal: str, path: str, body: bytes, *, overwrite: bool) -> FileInfo:
        """Write the file; Conflict (409) if it exists and not `overwrite`, FilesFull (507)
        past MAX_FILES. The caller bounds `body` by MAX_FILE_BYTES."""
        reply = await self._put(self._keys(principal), PutArgs(path, overwrite, MAX_FILES), body)
        refused = _refused(reply)
        if refused == "exists":
            raise Conflict(f"user data file {path!r} exists (overwrite=false)")
        if refused == "full":
            raise FilesFull(f"at most {MAX_FILES} user data files per principal")
        return _info(path, reply)

    @guarded
    async def move(self, principal: str, source: str, dest: str, *, overwrite: bool) -> FileInfo:
        reply = await self._move(self._keys(principal), MoveArgs(source, dest, overwrite))
        refused = _refused(reply)
        if refused == "missing":
            raise NotFound(f"no user data file {source!r}")
        if refused == "exists":
            raise Conflict(f"user data file {dest!r} exists (overwrite=false)")
        return _info(dest, reply)

    @guarded
    async def delete(self, principal: str, path: str) -> None:
        """Remove the file; NotFound when there was none."""
        if not await self._delete(self._keys(principal), DeleteArgs(path)):
            raise NotFound(f"no user data file {path!r}")

    @guarded
    async def settings(self, principal: str) -> dict[str, Any]:
        """Every setting of the principal (id -> value)."""
        raw = fields_of(await self.redis.hgetall(self.keys.settings(principal)))
        return {key: orjson.loads(value) for key, value in raw.items()}

    @guarded
    async def setting(self, principal: str, setting_id: str) -> Any:
        """One setting's value; None when it is not set (as ComfyUI answers)."""
        raw = await self.redis.hget(self.keys.settings(principal), setting_id)
        return None if raw is None else orjson.loads(raw)

    @guarded
    async def update_settings(self, principal: str, values: dict[str, Any]) -> None:
        """Set every id in `values` (one HSET: all or none); others stay as they were."""
        if not values:
            return
        key = self.keys.settings(principal)
        known = await self.redis.hmget(key, list(values))
        added = sum(1 for value in known if value is None)
        if added and await self.redis.hlen(key) + added > MAX_SETTINGS:
            raise BadRequest(f"at most {MAX_SETTINGS} settings per principal", field="settings")
        await self.redis.hset(key, mapping={k: orjson.dumps(v) for k, v in values.items()})
