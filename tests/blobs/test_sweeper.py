"""The sweeper on the suite's real S3-protocol server and Redis: it removes exactly the
orphans (objects of expired jobs, of dead attempts, past their pool's TTL, inputs whose
record expired) and aborts dead multipart uploads, and touches nothing younger than its
grace or still in use."""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncIterator

import pytest

from comfyfleet.blobs import open_blob_store, single
from comfyfleet.blobs.naming import attempt_tag, output_key
from comfyfleet.blobs.s3 import S3BlobStore
from comfyfleet.blobs.sweeper import Sweeper
from comfyfleet.clock import FrozenClock
from comfyfleet.config import BlobConfig
from comfyfleet.models.job import JobSpec, OutputRef
from comfyfleet.store.inputs import InputStore
from comfyfleet.store.jobs import JobStore
from comfyfleet.store.results import ResultStore
from tests.inputs.samples import png
from tests.support.s3 import S3Server

LEASE_MS = 30_000
GRACE_MS = 60_000


@pytest.fixture
def cfg(s3_server: S3Server) -> BlobConfig:
    return s3_server.config(output_ttl_s={"short": 3600})


@pytest.fixture
async def s3(cfg: BlobConfig, store: JobStore) -> AsyncIterator[S3BlobStore]:
    blobs = await open_blob_store(cfg, store.redis, store.keys)
    assert isinstance(blobs, S3BlobStore)
    yield blobs
    await blobs.close()


def spec(pool: str = "default") -> JobSpec:
    return JobSpec(graph={"1": {"class_type": "EmptyImage", "inputs": {}}}, pool=pool)


async def put(blobs: S3BlobStore, key: str) -> str:
    await blobs.put_stream(key, single(b"bytes"), content_type="image/png")
    return key


async def dead_upload(blobs: S3BlobStore, key: str) -> str:
    """A multipart upload whose writer died after its first part (never completed)."""
    started = await blobs.client.create_multipart_upload(Bucket=blobs.bucket,
                                                         Key=blobs.prefix + key)  # fmt: skip
    await blobs.client.upload_part(Bucket=blobs.bucket, Key=blobs.prefix + key, PartNumber=1,
                                   UploadId=started["UploadId"], Body=b"x" * 1024)  # fmt: skip
    return key


async def test_sweep_removes_orphans_and_dead_uploads_only(
    s3: S3BlobStore, store: JobStore
) -> None:
    results = ResultStore(s3)
    inputs = InputStore(store.redis, store.keys, blobs=s3)

    done, _ = await store.enqueue(spec())
    (claimed,) = await store.claim("n1", lease_ms=LEASE_MS)
    kept = await results.put(claimed, 0, "out.png", single(b"png"), content_type="image/png")
    ref = OutputRef(index=0, filename="out.png", size=kept.size, sha256=kept.sha256, key=kept.key)
    await store.complete(done.id, "n1", [ref])
    older = await put(s3, output_key("default", done.id, "a0-1", 0, "out.png"))

    running, _ = await store.enqueue(spec())
    (live,) = await store.claim("n2", lease_ms=LEASE_MS)
    live_tag = attempt_tag(live.attempts, live.started_ms)
    live_object = await put(s3, output_key("default", running.id, live_tag, 0, "a.png"))
    live_upload = await dead_upload(s3, output_key("default", running.id, live_tag, 1, "b.png"))
    stale_upload = await dead_upload(s3, output_key("default", running.id, "a0-5", 0, "a.png"))

    gone_job = await put(s3, output_key("default", uuid.uuid4().hex, "a1-1", 0, "x.png"))
    recorded = await inputs.put(png(8, 8, seed=3))
    forgotten_input = await put(s3, "inputs/" + "f" * 32)

    clock = FrozenClock(start_ms=time.time_ns() // 1_000_000)
    sweeper = Sweeper(results, store, inputs, grace_ms=GRACE_MS, clock=clock)
    young = await sweeper.sweep_once()
    assert (young.outputs, young.inputs) == ([], [])  # all within the grace
    # An output upload needs no grace: its attempt is over, so nothing will complete it.
    assert young.uploads == [stale_upload]

    clock.advance(GRACE_MS + 1000)
    swept = await sweeper.sweep_once()
    assert sorted(swept.outputs) == sorted([older, gone_job])
    assert swept.inputs == [forgotten_input]
    assert swept.uploads == []
    remaining = {b.key async for b in s3.list_blobs("")}
    assert remaining == {kept.key, live_object, f"inputs/{recorded.id}"}
    assert [u.key async for u in s3.list_uploads("")] == [live_upload]
    assert await inputs.get(recorded.id) is not None


async def test_outputs_past_their_pools_ttl_are_swept(
    s3: S3BlobStore, cfg: BlobConfig, store: JobStore
) -> None:
    results = ResultStore(s3, cfg)
    inputs = InputStore(store.redis, store.keys, blobs=s3)
    keys = {}
    for pool in ("short", "default"):
        job, _ = await store.enqueue(spec(pool))
        (claimed,) = await store.claim("n1", pools=[pool], lease_ms=LEASE_MS)
        stored = await results.put(claimed, 0, "o.png", single(b"p"), content_type="image/png")
        ref = OutputRef(index=0, filename="o.png", size=1, key=stored.key)
        await store.complete(job.id, "n1", [ref])
        keys[pool] = stored.key
    clock = FrozenClock(start_ms=time.time_ns() // 1_000_000 + 3600 * 1000 + 1000)
    swept = await Sweeper(results, store, inputs, grace_ms=0, clock=clock).sweep_once()
    assert swept.outputs == [keys["short"]]  # the default pool keeps its outputs 7 days
    assert await s3.size(keys["default"]) == 1
