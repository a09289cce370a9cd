"""Uploaded input images: kept until the jobs that name them have run.

An upload is content-addressed: its id is the first 32 hex digits of its sha256, and the
name a job uses for it (`cfin_<id>.<ext>`) is what a workflow's `image` param takes. The
same bytes uploaded twice are one input. An upload expires `INPUT_TTL_MS` after it is
stored unless a job names it: each enqueue extends the TTL to `HOLD_TTL_MS` (never
shortens it), so the bytes outlive the job's queueing and running. They are never deleted
when one job ends, because other jobs may name the same input; the TTL reclaims them.

Where the bytes live follows the blob store (comfyfleet.blobs): with the Redis store they
sit in the input's HASH itself (one key, so the TTL and each hold cover bytes and metadata
at once); with S3 they are the object `inputs/<id>`, written before the HASH, and the HASH
keeps the metadata and the object's key. The sweeper removes objects whose HASH expired.

The node finds inputs in a graph by their names (see `input_names`), fetches the bytes,
uploads them to its ComfyUI and rewrites the name to the one ComfyUI answered.
"""

from __future__ import annotations

import hashlib
import re
import struct
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import redis.asyncio as aioredis

from comfyfleet.blobs import BlobStore, read_all, single
from comfyfleet.blobs.naming import input_key
from comfyfleet.clock import SYSTEM_CLOCK, Clock
from comfyfleet.errors import ComfyfleetError, ValidationFailed
from comfyfleet.store.keys import Keys
from comfyfleet.store.scripts import Script, guarded, standalone, text

# An upload no job names yet (ms); and how long a job's enqueue keeps it (ms).
INPUT_TTL_MS = 3600 * 1000
HOLD_TTL_MS = 24 * 3600 * 1000
# Decoders allocate width x height x 4 bytes: refuse pixel bombs before any node loads one.
MAX_SIDE = 16384
MAX_PIXELS = 64 * 1024 * 1024
# The most bytes an image of its size can need: 8 a pixel (16-bit RGBA, uncompressed, which
# no PNG, JPEG or WebP encoder exceeds) plus a byte a row and room for metadata (ICC, EXIF).
# Anything longer carries a payload that is not the image: a valid header followed by
# megabytes of other bytes must not fill Redis.
MAX_BYTES_PER_PIXEL = 8
METADATA_BYTES = 1024 * 1024
# Per caller and for all callers (bytes) unless configured (BalancerConfig.inputs).
CALLER_QUOTA_BYTES = 512 * 1024 * 1024
TOTAL_BYTES = 2048 * 1024 * 1024
ID_LENGTH = 32
INPUT_ID_PATTERN = rf"^[0-9a-f]{{{ID_LENGTH}}}$"
INPUT_NAME_PATTERN = rf"^cfin_([0-9a-f]{{{ID_LENGTH}}})\.(png|jpg|webp)$"
_INPUT_NAME = re.compile(INPUT_NAME_PATTERN)
# The owner recorded for uploads made without one (the admin's, as jobs without an owner).
ANY_OWNER = "admin"
_EXTENSIONS = {"image/png": "png", "image/jpeg": "jpg", "image/webp": "webp"}


@dataclass(frozen=True)
class PutArgs:
    """input_put.lua's arguments. Sizes in bytes, TTL in ms; `caller` is charged."""

    ttl_ms: int
    fields: dict[str, str]
    input_id: str
    input_prefix: str
    caller: str
    size: int
    caller_quota: int
    total: int
    owner: str  # the uploader (a Principal label); recorded as field `by:<owner>`


@dataclass(frozen=True)
class HoldArgs:
    ttl_ms: int
    owner: str  # only inputs this owner uploaded count; "": any (the admin)


class InputsFull(ComfyfleetError):
    """The caller's share of the input store, or the store itself, is full (429)."""

    status = 429
    code = "input-store-full"
    title = "Input store full"
    retryable = True


class InputQuotaExceeded(InputsFull):
    code = "input-quota-exceeded"
    title = "Input quota exceeded"


class UnsupportedImage(ComfyfleetError):
    status = 415
    code = "unsupported-media-type"
    title = "Unsupported image type"


@dataclass(frozen=True)
class ImageInfo:
    """What the header of an image says. Sizes in pixels."""

    content_type: str
    width: int
    height: int

    @property
    def extension(self) -> str:
        return _EXTENSIONS[self.content_type]


@dataclass(frozen=True)
class StoredInput:
    """One stored upload. `size` in bytes, `expires_ms` ms since the epoch."""

    id: str
    name: str
    image: ImageInfo
    size: int
    sha256: str
    expires_ms: int


def input_name(input_id: str, info: ImageInfo) -> str:
    return f"cfin_{input_id}.{info.extension}"


def input_id_of(name: str) -> str | None:
    """The input id a name refers to, or None when it names no upload of ours."""
    match = _INPUT_NAME.fullmatch(name)
    return match.group(1) if match else None


def input_names(graph: dict[str, Any]) -> dict[str, list[tuple[str, str]]]:
    """Every upload a graph names: input id -> the (node id, input name) pairs holding it."""
    found: dict[str, list[tuple[str, str]]] = {}
    for node_id, node in graph.items():
        inputs = node.get("inputs") if isinstance(node, dict) else None
        for key, value in (inputs or {}).items():
            if isinstance(value, str) and (input_id := input_id_of(value)) is not None:
                found.setdefault(input_id, []).append((node_id, key))
    return found


def sniff_image(data: bytes) -> ImageInfo:
    """The type and size from the bytes themselves (never from a client's word): PNG, JPEG
    or WebP. UnsupportedImage (415) for anything else, ValidationFailed (422) for a header
    that is broken or an image beyond MAX_SIDE / MAX_PIXELS."""
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        info = _png(data)
    elif data.startswith(b"\xff\xd8\xff"):
        info = _jpeg(data)
    elif data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        info = _webp(data)
    else:
        raise UnsupportedImage("the upload is not a PNG, JPEG or WebP image")
    if info is None:
        raise ValidationFailed("the image header is broken or truncated", field="image")
    if not (0 < info.width <= MAX_SIDE and 0 < info.height <= MAX_SIDE) or (
        info.width * info.height > MAX_PIXELS
    ):
        raise ValidationFailed(
            f"image is {info.width}x{info.height} pixels; at most {MAX_SIDE} a side and "
            f"{MAX_PIXELS} in all",
            field="image",
        )
    bound = max_bytes(info)
    if len(data) > bound:
        raise ValidationFailed(
            f"the upload is {len(data)} bytes, more than a {info.width}x{info.height} image "
            f"can need ({bound}): it carries something besides the image",
            field="image",
        )
    return info


def max_bytes(info: ImageInfo) -> int:
    """The longest file an image of this size may be (bytes); see MAX_BYTES_PER_PIXEL."""
    return info.width * info.height * MAX_BYTES_PER_PIXEL + info.height + METADATA_BYTES


def _png(data: bytes) -> ImageInfo | None:
    if len(data) < 24 or data[12:16] != b"IHDR":
        return None
    width, height = struct.unpack(">II", data[16:24])
    return ImageInfo("image/png", width, height)


# Start-of-frame markers carry the size; C4 (DHT), C8 (JPG) and CC (DAC) share the range.
_SOF = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}


def _jpeg(data: bytes) -> ImageInfo | None:
    pos = 2
    while pos + 4 <= len(data):
        if data[pos] != 0xFF:
            return None
        marker = data[pos + 1]
        if marker == 0xFF:  # fill byte
            pos += 1
            continue
        if marker in (0xD8, 0x01) or 0xD0 <= marker <= 0xD7:
            pos += 2
            continue
        (length,) = struct.unpack(">H", data[pos + 2 : pos + 4])
        if marker in _SOF:
            if pos + 9 > len(data):
                return None
            height, width = struct.unpack(">HH", data[pos + 5 : pos + 9])
            return ImageInfo("image/jpeg", width, height)
        pos += 2 + length
    return None


def _webp(data: bytes) -> ImageInfo | None:
    chunk, body = data[12:16], data[20:]
    if chunk == b"VP8X" and len(body) >= 10:
        width = 1 + int.from_bytes(body[4:7], "little")
        height = 1 + int.from_bytes(body[7:10], "little")
    elif chunk == b"VP8 " and len(body) >= 10 and body[3:6] == b"\x9d\x01\x2a":
        width = int.from_bytes(body[6:8], "little") & 0x3FFF
        height = int.from_bytes(body[8:10], "little") & 0x3FFF
    elif chunk == b"VP8L" and len(body) >= 5 and body[0] == 0x2F:
        bits = int.from_bytes(body[1:5], "little")
        width, height = (bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1
    else:
        return None
    return ImageInfo("image/webp", width, height)


class InputStore:
    """Uploaded images in Redis (see the module docstring). Times in ms."""

    def __init__(
        self,
        redis: aioredis.Redis,
        keys: Keys,
        clock: Clock = SYSTEM_CLOCK,
        *,
        ttl_ms: int = INPUT_TTL_MS,
        hold_ms: int = HOLD_TTL_MS,
        blobs: BlobStore | None = None,
        caller_quota_bytes: int = CALLER_QUOTA_BYTES,
        total_bytes: int = TOTAL_BYTES,
    ) -> None:
        self.caller_quota_bytes = caller_quota_bytes
        self.total_bytes = total_bytes
        self.redis = redis
        # None or the Redis store: bytes inline in the HASH (see the module docstring).
        self.blobs = blobs if blobs is not None and blobs.kind != "redis" else None
        self.keys = keys
        self.clock = clock
        self.ttl_ms = ttl_ms
        self.hold_ms = hold_ms
        self._put: Script[PutArgs] = standalone(redis, "input_put")
        self._hold: Script[HoldArgs] = standalone(redis, "input_hold")

    @guarded
    async def put(self, data: bytes, caller: str = "-", owner: str = ANY_OWNER) -> StoredInput:
        """Store an image (sniffed first, see `sniff_image`), charged to `caller` until it
        expires, and recorded as `owner`'s (a Principal label: jobs of other owners cannot
        name it; the same bytes stored by several owners are theirs alike):
        InputQuotaExceeded / InputsFull (429) beyond the caller's quota or the
        store's total (an object already written then is an orphan the sweeper removes).
        Storing bytes already stored returns the same input, charges nothing and never
        shortens its TTL."""
        info = sniff_image(data)
        digest = hashlib.sha256(data).hexdigest()
        input_id = digest[:ID_LENGTH]
        fields = {"content_type": info.content_type, "size": str(len(data)), "sha256": digest}
        fields.update(width=str(info.width), height=str(info.height))
        inline: tuple[bytes, ...] = (data,)
        if self.blobs is not None:  # the object first: a record never names missing bytes
            stored = await self.blobs.put_stream(input_key(input_id), single(data),
                                                 content_type=info.content_type)  # fmt: skip
            fields["blob"], inline = stored.key, ()
        args = PutArgs(self.ttl_ms, fields, input_id, self.keys.input_prefix, caller,
                       len(data), self.caller_quota_bytes, self.total_bytes, owner)  # fmt: skip
        keys = [self.keys.input(input_id), self.keys.input_ledger, self.keys.input_usage]
        ttl, held = (int(v) for v in await self._put(keys, args, *inline))
        if ttl == -1:
            raise InputQuotaExceeded(
                f"this caller's uploads already hold {held} of its {self.caller_quota_bytes} "
                "bytes; they are freed as uploads expire (an hour, a day once a job names them)"
            )
        if ttl == -2:
            raise InputsFull(f"the input store holds {held} of its {self.total_bytes} bytes")
        return StoredInput(input_id, input_name(input_id, info), info, len(data), digest,
                           self.clock.now_ms() + ttl)  # fmt: skip

    @guarded
    async def hold(self, input_ids: Iterable[str], owner: str | None = None) -> list[str]:
        """Keep these inputs for at least `hold_ms` from now (a job that names them was
        accepted). Returns the ids that do not exist (expired or never uploaded) or, when
        `owner` is given, that this owner did not upload (None: any input, the admin)."""
        ids = list(dict.fromkeys(input_ids))
        if not ids:
            return []
        args = HoldArgs(self.hold_ms, owner or "")
        missing = await self._hold([self.keys.input(i) for i in ids], args)
        return [ids[int(pos) - 1] for pos in missing]

    @guarded
    async def get(self, input_id: str, owner: str | None = None) -> tuple[bytes, str] | None:
        """(bytes, content type), or None when the input is gone or, when `owner` is given,
        is not one that owner uploaded (None: any input, for the node and the admin)."""
        data, content_type, blob, mine = await self.redis.hmget(
            self.keys.input(input_id), ["data", "content_type", "blob", f"by:{owner}"]
        )
        if content_type is None or (owner is not None and mine is None):
            return None
        if blob is not None and self.blobs is not None:
            data = await read_all(self.blobs, text(blob))
        if data is None:
            return None
        return (data.encode() if isinstance(data, str) else data), text(content_type)

    @guarded
    async def exists(self, input_ids: Sequence[str]) -> list[bool]:
        async with self.redis.pipeline(transaction=False) as pipe:
            for input_id in input_ids:
                pipe.exists(self.keys.input(input_id))
            return [bool(n) for n in await pipe.execute()]
