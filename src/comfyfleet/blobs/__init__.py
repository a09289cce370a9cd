"""Blob stores: where output and input bytes live. Redis keeps the state and each blob's
key and metadata; the bytes go to Redis itself (small fleets, `up`) or to S3-compatible
object storage (`--store-url s3://bucket/prefix`). See `base.py` for the contract."""

from __future__ import annotations

import redis.asyncio as aioredis

from comfyfleet.blobs.base import (
    BlobStore,
    BlobStoreUnavailable,
    ByteRange,
    ListedBlob,
    OutputTooLarge,
    StoredBlob,
    read_all,
    single,
)
from comfyfleet.blobs.redis_blobs import DEFAULT_MAX_BYTES, RedisBlobStore
from comfyfleet.config import BlobConfig
from comfyfleet.errors import ConfigError
from comfyfleet.store.keys import Keys

__all__ = [
    "S3_EXTRA_MISSING",
    "BlobStore",
    "BlobStoreUnavailable",
    "ByteRange",
    "ListedBlob",
    "OutputTooLarge",
    "RedisBlobStore",
    "StoredBlob",
    "open_blob_store",
    "read_all",
    "single",
]

S3_EXTRA_MISSING = "--store-url s3:// needs the optional S3 client: pip install 'comfyfleet[s3]'"


async def open_blob_store(cfg: BlobConfig, redis: aioredis.Redis, keys: Keys) -> BlobStore:
    """The store `cfg` names. ConfigError when S3 is asked for without the `s3` extra, or
    its bucket is missing or refused."""
    if not cfg.s3:
        return RedisBlobStore(redis, keys, max_bytes=cfg.max_output_bytes or DEFAULT_MAX_BYTES)
    try:
        from comfyfleet.blobs.s3 import S3BlobStore
    except ImportError:
        raise ConfigError(S3_EXTRA_MISSING) from None
    return await S3BlobStore.open(cfg)
