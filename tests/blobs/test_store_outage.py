"""The object store down while a node stores outputs (a real S3-protocol server, stopped and
started again): the job completes only once its outputs are stored, and the outage costs
no attempt -- the node keeps the finished prompt's files in ComfyUI and stores them when
the store is back (like a Redis outage, see node/runner.py)."""

from __future__ import annotations

from pathlib import Path

from comfyfleet.blobs.s3 import S3BlobStore
from comfyfleet.config import RedisConfig
from comfyfleet.models.job import JobStatus
from tests.reliability.rig import make_rig
from tests.support.s3 import S3Server, create_bucket
from tests.support.waiting import until


async def test_an_object_store_outage_delays_completion_and_spends_no_attempt(
    redis_config: RedisConfig, tmp_path: Path
) -> None:
    server = S3Server(tmp_path / "moto.log")  # its own: this test stops it
    server.start()
    create_bucket(server)
    blobs = await S3BlobStore.open(server.config())
    try:
        async with make_rig(redis_config, tmp_path / "sim", blobs=blobs) as rig:
            server.stop()
            job = await rig.submit(7)
            await rig.worker.run_once()

            async def ran() -> int:
                return rig.executions(job)

            await until(ran, lambda n: n == 1, what="the prompt to finish in ComfyUI")
            # The files are made but cannot be stored: the job stays running, unfinished.
            held = await rig.get(job.id)
            assert (held.status, held.outputs) == (JobStatus.RUNNING, [])

            server.start()  # back, empty (moto keeps nothing): the bucket is made again
            create_bucket(server)
            done = await rig.settled(job.id, what="the job to complete once S3 is back")
            assert (done.status, done.attempts) == (JobStatus.SUCCEEDED, 1)
            (output,) = done.outputs
            assert output.key is not None
            assert await blobs.size(output.key) == output.size
    finally:
        await blobs.close()
        server.stop()
