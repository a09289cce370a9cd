"""The blob store's settings: what a wrong one says, on the command line and at start."""

from __future__ import annotations

import sys

import pytest
import redis.asyncio as aioredis
from typer.testing import CliRunner

from comfyfleet.blobs import S3_EXTRA_MISSING, open_blob_store
from comfyfleet.cli import app
from comfyfleet.cli.options import parse_pool_seconds
from comfyfleet.config import BlobConfig, RedisConfig
from comfyfleet.errors import ConfigError
from comfyfleet.store.keys import Keys
from tests.support.s3 import S3Server


def test_store_urls_are_redis_or_s3() -> None:
    assert BlobConfig(store_url="redis").store_url is None
    cfg = BlobConfig(store_url="s3://bucket/some/prefix/")
    assert (cfg.s3, cfg.bucket, cfg.prefix) == (True, "bucket", "some/prefix/")
    assert BlobConfig(store_url="s3://bucket").prefix == ""
    with pytest.raises(ValueError, match="s3://bucket"):
        BlobConfig(store_url="ftp://bucket/x")
    with pytest.raises(ValueError, match="need an S3 store"):
        BlobConfig(presign_s=60)


def test_output_ttls_per_pool_parse_or_fail_clearly() -> None:
    assert parse_pool_seconds(["3600", "gpu-big=60"]) == {"*": 3600, "gpu-big": 60}
    for bad in ("x", "=5", "pool=0", "pool=-1"):
        with pytest.raises(ConfigError, match="POOL=N"):
            parse_pool_seconds([bad])


def test_a_bad_store_url_stops_a_role_with_a_clear_message() -> None:
    result = CliRunner().invoke(app, ["node", "--store-url", "gs://bucket"])
    assert result.exit_code == 2
    assert "store_url" in result.output
    assert "s3://bucket" in result.output


async def test_a_missing_bucket_stops_the_role_naming_it(
    s3_server: S3Server, redis_config: RedisConfig
) -> None:
    cfg = s3_server.config().model_copy(update={"store_url": "s3://no-such-bucket/x"})
    redis = aioredis.Redis.from_url(redis_config.url)
    with pytest.raises(ConfigError, match="no-such-bucket"):
        await open_blob_store(cfg, redis, Keys(redis_config.namespace))
    await redis.aclose()


async def test_s3_without_the_extra_says_how_to_get_it(
    monkeypatch: pytest.MonkeyPatch, redis_config: RedisConfig
) -> None:
    monkeypatch.setitem(sys.modules, "comfyfleet.blobs.s3", None)  # as if not installed
    redis = aioredis.Redis.from_url(redis_config.url)
    with pytest.raises(ConfigError) as refused:
        await open_blob_store(BlobConfig(store_url="s3://b/p"), redis, Keys("x"))
    await redis.aclose()
    assert refused.value.detail == S3_EXTRA_MISSING
    assert "comfyfleet[s3]" in S3_EXTRA_MISSING
