"""The names ComfyUI clients give their uploads, per owner.

A fleet input is content-addressed (`cfin_<id>.<ext>`, store/inputs.py), and
`/upload/image` answers that name, which a client that reads the answer uses. Not every
client does: ComfyUI keeps an upload under the name and subfolder the client sent, so its
editor's mask editor (four uploads into `clipspace/` under names it chose, the last one
merged into the third) and many scripts go on naming the file as they sent it -- in
`original_ref`, in `/view`, and in a LoadImage as `clipspace/clipspace-painted-masked-<ts>.png
[input]`. So each upload's client name maps to its input, per owner (one owner's names
never reach another's uploads): `{ns}:input-names:<owner>`, a HASH of `subfolder/filename`
(or `filename`) -> input name. A name is forgotten an upload's TTL after it was last given
(lua/input_name.lua), and beyond MAX_NAMES an owner's oldest go first: the same bytes
uploaded again cost nothing, so ever new names must not grow the map without bound. A name
is resolved when a prompt uses it, and the prompt then holds the input by its own name. The
last upload under a name wins, as with ComfyUI's `overwrite`.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

import redis.asyncio as aioredis

from comfyfleet.errors import BadRequest
from comfyfleet.models.file_inputs import file_name_problem
from comfyfleet.store.inputs import INPUT_TTL_MS, input_id_of
from comfyfleet.store.keys import Keys
from comfyfleet.store.scripts import Script, guarded, standalone, text

# Longest client name kept (bytes of `subfolder/filename`).
MAX_PATH = 255
# Names kept per owner (its most recent): a mask editor's save gives four.
MAX_NAMES = 20_000
# ComfyUI's annotated file names: `name [input]`, `name [output]`, `name [temp]`.
_ANNOTATED = re.compile(r"^(.*) \[(input|output|temp)\]$")
# What an uploaded image's name ends with; other strings are never looked up.
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp")


def client_path(subfolder: str, filename: str | None) -> str | None:
    """The name later requests use for an upload sent as `filename` into `subfolder`
    (ComfyUI keeps the file's base name only); None without a filename. BadRequest for
    one that would leave ComfyUI's input folder or has no place in a file name."""
    base = re.split(r"[/\\]", filename or "")[-1]
    if not base:
        return None
    folder = subfolder.strip("/")
    path = f"{folder}/{base}" if folder else base
    problem = file_name_problem(path, file_input=True)
    if problem is not None or len(path.encode()) > MAX_PATH:
        field = "subfolder" if folder and file_name_problem(folder, file_input=True) else "image"
        why = problem or f"is longer than {MAX_PATH} bytes"
        raise BadRequest(f"the upload's name {path!r} {why}", field=field)
    return path


def split_annotation(value: str) -> tuple[str, str]:
    """`name [type]` as (name, type); a bare name is an input, as ComfyUI reads it."""
    match = _ANNOTATED.fullmatch(value)
    return (match.group(1), match.group(2)) if match else (value, "input")


def looked_up(value: str) -> str | None:
    """The client name a graph value may be (an input image not named the fleet's way),
    or None for a value never looked up."""
    path, kind = split_annotation(value)
    if kind != "input" or input_id_of(path) is not None:
        return None
    return path if path.lower().endswith(IMAGE_SUFFIXES) else None


@dataclass(frozen=True)
class NameArgs:
    path: str
    name: str
    ttl_ms: int
    max_names: int


class InputNames:
    """Every method raises StoreError (503 at the API edge) when Redis cannot be reached."""

    def __init__(
        self,
        redis: aioredis.Redis,
        keys: Keys,
        *,
        ttl_ms: int = INPUT_TTL_MS,
        max_names: int = MAX_NAMES,
    ) -> None:
        self.redis = redis
        self.keys = keys
        self.ttl_ms = ttl_ms
        self.max_names = max_names
        self._name: Script[NameArgs] = standalone(redis, "input_name", clock=True)

    @guarded
    async def remember(self, owner: str, path: str, name: str) -> None:
        """`owner`'s upload sent as `path` is the input `name` (a later one replaces it)."""
        keys = [self.keys.input_names(owner), self.keys.input_name_times(owner), self.keys.clock]
        await self._name(keys, NameArgs(path, name, self.ttl_ms, self.max_names))

    @guarded
    async def resolve(self, owner: str, paths: Sequence[str]) -> dict[str, str]:
        """The input names of those of `paths` that `owner` uploaded under that name."""
        if not paths:
            return {}
        found = await self.redis.hmget(self.keys.input_names(owner), list(paths))
        return {path: text(name) for path, name in zip(paths, found, strict=True) if name}
