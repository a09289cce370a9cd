"""The blob store interface: where output and input bytes live, apart from the state.

A blob is written once, from a stream, and becomes visible only when it is whole: a writer
that dies halfway leaves nothing a reader can see (Redis: a temporary key renamed at the
end; S3: a multipart upload that is completed only at the end, and aborted on failure).
Blobs are never changed after that; they are read whole or by byte range, and deleted.
Sizes are in bytes, times in ms since the epoch unless a name says otherwise.
"""

from __future__ import annotations

import hashlib
from collections.abc import AsyncGenerator, AsyncIterable, AsyncIterator, Iterable
from dataclasses import dataclass
from typing import Protocol

from comfyfleet.errors import ComfyfleetError, StoreError


class OutputTooLarge(ComfyfleetError):
    status = 507
    code = "output-too-large"
    title = "Output exceeds the result store's size cap"


class BlobStoreUnavailable(StoreError):
    """The object store is unreachable or refused a request; worth trying again."""

    code = "blob-store-unavailable"
    title = "Object store unavailable"


@dataclass(frozen=True)
class StoredBlob:
    """A blob as written: its key, size (bytes), content type and sha256 (hex)."""

    key: str
    size: int
    content_type: str
    sha256: str


@dataclass(frozen=True)
class ListedBlob:
    """One blob (or one unfinished multipart upload) seen by a listing."""

    key: str
    modified_ms: int
    upload_id: str | None = None


@dataclass(frozen=True)
class ByteRange:
    """Bytes `start` to `end` of a blob, both inclusive (HTTP's convention)."""

    start: int
    end: int

    @property
    def length(self) -> int:
        return self.end - self.start + 1


class BlobStore(Protocol):
    """Bytes by key. Implementations: `RedisBlobStore`, `S3BlobStore`."""

    kind: str
    # The largest blob `put_stream` accepts by default (bytes).
    max_bytes: int

    async def put_stream(
        self, key: str, chunks: AsyncIterable[bytes], *, content_type: str,
        ttl_ms: int | None = None, max_bytes: int | None = None,
    ) -> StoredBlob:  # fmt: skip
        """Write a blob from a stream, holding at most one part in memory; visible only once
        whole. OutputTooLarge past `max_bytes` (default `self.max_bytes`); `ttl_ms`: how
        long the store keeps it (None: until deleted; S3 ignores it, see the sweeper)."""
        ...

    async def size(self, key: str) -> int | None:
        """The blob's size in bytes, or None when there is no such blob."""
        ...

    def read(self, key: str, byte_range: ByteRange | None = None) -> AsyncGenerator[bytes, None]:
        """The blob's bytes (or the range's) in chunks; nothing when it is gone."""
        ...

    async def delete(self, keys: Iterable[str]) -> None:
        """Delete blobs; keys that do not exist are ignored."""
        ...

    async def presign(self, key: str, *, filename: str, expires_s: int) -> str | None:
        """A URL anyone may GET the blob from for `expires_s` s; None when the store has no
        such URLs (Redis)."""
        ...

    def list_blobs(self, prefix: str) -> AsyncIterator[ListedBlob]:
        """Every blob under `prefix` (none for stores whose blobs expire by TTL)."""
        ...

    def list_uploads(self, prefix: str) -> AsyncIterator[ListedBlob]:
        """Unfinished multipart uploads under `prefix` (invisible to readers)."""
        ...

    async def abort_upload(self, key: str, upload_id: str) -> None: ...

    async def close(self) -> None: ...


async def read_all(store: BlobStore, key: str) -> bytes | None:
    """A small blob whole in memory (inputs, tests), or None when it is gone."""
    if await store.size(key) is None:
        return None
    return b"".join([chunk async for chunk in store.read(key)])


async def single(data: bytes) -> AsyncIterator[bytes]:
    """Bytes already in memory as a one-chunk stream, for `put_stream`."""
    yield data


class Tally:
    """Counts and hashes a stream as it passes; refuses it past `max_bytes`."""

    def __init__(self, key: str, max_bytes: int) -> None:
        self.key = key
        self.max_bytes = max_bytes
        self.size = 0
        self.digest = hashlib.sha256()

    def add(self, chunk: bytes) -> None:
        self.size += len(chunk)
        if self.size > self.max_bytes:
            raise OutputTooLarge(f"{self.key} exceeds the store's cap of {self.max_bytes} bytes")
        self.digest.update(chunk)

    def stored(self, content_type: str) -> StoredBlob:
        return StoredBlob(self.key, self.size, content_type, self.digest.hexdigest())
