"""A 200 MB output through a real fleet with the S3 store, and a node SIGKILLed while it
uploads one: the upload was multipart and never visible, the job is retried on the other
node and succeeds, the dead upload is swept, and the output streams back whole and by
range through the balancer. The node that stored 200 MB never held it in memory."""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import aiohttp
import pytest

from comfyfleet.blobs.s3 import S3BlobStore
from comfyfleet.cli.fleet import Fleet
from comfyfleet.config import BlobConfig
from comfyfleet.redis_server import RedisServer
from tests.e2e.conftest import Api, fleet_spec
from tests.support.s3 import S3Server
from tests.support.waiting import until

MIB = 1024 * 1024
BIG = 200 * MIB
# What the node may grow by while storing BIG: a part (8 MiB), its copy, socket buffers.
# Holding the whole output would take more than BIG.
MEMORY_BOUND = 100 * MIB


@pytest.fixture(scope="module")
def fleet(
    s3_server: S3Server,
    s3_cfg: BlobConfig,
    redis_server: RedisServer,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Fleet]:
    env = {**s3_server.env(s3_cfg), "BALANCER_SWEEP_INTERVAL": "1", "BALANCER_SWEEP_GRACE": "1"}
    spec = fleet_spec(redis_server, tmp_path_factory, extra_env=env, prefetch=0,
                      node_args=["--retry-base-ms", "0"])  # fmt: skip
    with Fleet(spec) as fleet:
        yield fleet


@pytest.fixture
async def s3(s3_cfg: BlobConfig) -> AsyncIterator[S3BlobStore]:
    store = await S3BlobStore.open(s3_cfg)
    yield store
    await store.close()


def memory_kib(pid: int, field: str) -> int:
    """A field of /proc/PID/status in KiB (VmRSS now, VmHWM the peak so far)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1])
    raise AssertionError(f"no {field} for {pid}")


async def pad_outputs(fleet: Fleet, size: int) -> None:
    async with aiohttp.ClientSession() as plain:
        for i in range(len(fleet.sims)):
            async with plain.post(f"{fleet.sim_url(i)}/sim/faults",
                                  json={"pad_output_bytes": size}) as r:  # fmt: skip
                assert r.status == 200, await r.text()


async def test_a_node_killed_mid_upload_leaves_nothing_and_the_retry_stores_200mb(
    api: Api, fleet: Fleet, s3: S3BlobStore
) -> None:
    await pad_outputs(fleet, BIG)
    rss_before = {i: memory_kib(p.process.pid, "VmRSS") for i, p in enumerate(fleet.nodes)
                  if p.process}  # fmt: skip
    status, job = await api.post_job({"workflow": "solid", "params": {}})
    assert status == 202, job
    prefix = f"outputs/default/{job['id']}/"

    async def uploads() -> list[str]:
        return [u.key async for u in s3.list_uploads(prefix)]

    first = await until(uploads, bool, timeout_s=60, what="the first attempt's upload")
    owner = (await api.job(job["id"]))["node_id"]
    victim = fleet.nodes[int(owner.removeprefix("node-")) - 1]
    victim.kill()  # SIGKILL, mid-upload
    assert [b.key async for b in s3.list_blobs(prefix)] == []  # nothing half-written shows

    done = await api.finished(job["id"], timeout_s=120)
    assert done["status"] == "succeeded", done
    assert done["attempts"] == 2
    assert done["history"][0]["error"]["code"] == "node_lost"
    (output,) = done["outputs"]
    assert output["size"] == BIG
    # Only the retry's object is visible; the dead attempt's upload is swept (aborted).
    await until(uploads, lambda left: left == [], timeout_s=30, what="the dead upload swept")
    (stored,) = [b.key async for b in s3.list_blobs(prefix)]
    assert stored != first[0]
    assert stored.split("/")[3].startswith("a2-")
    head = await s3.client.head_object(Bucket=s3.bucket, Key=s3.prefix + stored)
    assert head["ContentLength"] == output["size"]
    assert head["ETag"].strip('"').endswith(f"-{-(-output['size'] // s3.part_size)}")  # parts

    survivor = next(i for i, p in enumerate(fleet.nodes) if p is not victim)
    pid = fleet.nodes[survivor].process.pid  # type: ignore[union-attr]
    grew = (memory_kib(pid, "VmHWM") - rss_before[survivor]) * 1024
    print(f"\nthe node that stored {BIG // MIB} MiB peaked {grew / MIB:.0f} MiB above its start")
    assert grew < MEMORY_BOUND, f"the node grew by {grew // MIB} MiB storing {BIG // MIB} MiB"

    path = f"/api/v1/jobs/{job['id']}/outputs/0"
    digest, size = hashlib.sha256(), 0
    async with api.session.get(f"{api.base}{path}") as r:
        assert r.status == 200
        async for chunk in r.content.iter_chunked(MIB):
            digest.update(chunk)
            size += len(chunk)
    assert (size, digest.hexdigest()) == (output["size"], output["sha256"])
    async with api.session.get(f"{api.base}{path}", headers={"Range": "bytes=-16"}) as r:
        assert r.status == 206
        tail = await r.read()
    assert tail[-12:] == b"\x00\x00\x00\x00IEND\xaeB`\x82"  # the PNG still ends as one
