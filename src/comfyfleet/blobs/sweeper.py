"""The sweeper: removes what crashes and expiries leave in an object store.

Redis blobs expire by their own TTL; S3 objects do not, so the balancer sweeps:

- an output object is an orphan when its job is gone (the record expired or was deleted),
  when it is older than its pool's output TTL, when the job ended without naming it (an
  attempt that lost its lease, or died between storing and completing), or when it belongs
  to an attempt that is no longer the job's running one;
- an input object is an orphan when its Redis record expired;
- an unfinished multipart upload (a writer killed mid-upload; invisible to readers) of an
  output is aborted once its attempt is not the job's running one; of an input, once it is
  older than the grace and the input has no record.

Nothing younger than the grace is touched, so a writer between storing an object and
recording it never loses it. One process of the fleet sweeps at a time (the balancer runs
it under a leadership lease, like the reaper). Times in ms.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

import structlog

from comfyfleet.blobs.base import BlobStore, ListedBlob
from comfyfleet.blobs.naming import (
    INPUTS,
    OUTPUTS,
    attempt_tag,
    input_id_of_key,
    parse_output_key,
)
from comfyfleet.clock import SYSTEM_CLOCK, Clock
from comfyfleet.errors import StoreError
from comfyfleet.models.job import Job, JobStatus
from comfyfleet.models.retry import Backoff
from comfyfleet.store.inputs import InputStore
from comfyfleet.store.jobs import JobStore
from comfyfleet.store.results import ResultStore
from comfyfleet.tasks import Pacer

log = structlog.get_logger(__name__)

DELETE_BATCH = 500


@dataclass
class SweepReport:
    """What one sweep removed."""

    outputs: list[str] = field(default_factory=list)
    inputs: list[str] = field(default_factory=list)
    uploads: list[str] = field(default_factory=list)


def _live_attempt(job: Job | None, tag: str) -> bool:
    """Is `tag` the attempt the job is running now (whose writes may still land)?"""
    if job is None or job.status is not JobStatus.RUNNING:
        return False
    return tag == attempt_tag(job.attempts, job.started_ms)


class Sweeper:
    def __init__(
        self,
        results: ResultStore,
        jobs: JobStore,
        inputs: InputStore,
        *,
        grace_ms: int,
        clock: Clock = SYSTEM_CLOCK,
    ) -> None:
        self.results = results
        self.blobs: BlobStore = results.blobs
        self.jobs = jobs
        self.inputs = inputs
        self.grace_ms = grace_ms
        self.clock = clock

    async def sweep_once(self) -> SweepReport:
        """One pass over the store (StoreError when Redis or the store fails midway)."""
        now = self.clock.now_ms()
        report = SweepReport()
        jobs: dict[str, Job | None] = {}
        async for blob in self.blobs.list_blobs(OUTPUTS):
            if now - blob.modified_ms >= self.grace_ms and await self._dead_output(blob, now, jobs):
                report.outputs.append(blob.key)
        async for blob in self.blobs.list_blobs(INPUTS):
            if now - blob.modified_ms >= self.grace_ms and await self._dead_input(blob.key):
                report.inputs.append(blob.key)
        for start in range(0, len(report.outputs + report.inputs), DELETE_BATCH):
            await self.blobs.delete((report.outputs + report.inputs)[start : start + DELETE_BATCH])
        async for upload in self.blobs.list_uploads(""):  # no grace: see _dead_upload
            if await self._dead_upload(upload, now, jobs):
                assert upload.upload_id is not None
                await self.blobs.abort_upload(upload.key, upload.upload_id)
                report.uploads.append(upload.key)
        if report.outputs or report.inputs or report.uploads:
            log.info("blobs_swept", outputs=len(report.outputs), inputs=len(report.inputs),
                     uploads=len(report.uploads))  # fmt: skip
        return report

    async def _job(self, job_id: str, cache: dict[str, Job | None]) -> Job | None:
        if job_id not in cache:
            cache[job_id] = await self.jobs.get(job_id)
        return cache[job_id]

    async def _dead_output(self, blob: ListedBlob, now: int, cache: dict[str, Job | None]) -> bool:
        name = parse_output_key(blob.key)
        if name is None:
            return False  # not ours: leave it
        if now - blob.modified_ms > self.results.ttl_ms(name.pool):
            return True
        job = await self._job(name.job_id, cache)
        if job is not None and job.is_terminal:
            return blob.key not in {o.key for o in job.outputs}
        return not _live_attempt(job, name.tag)

    async def _dead_input(self, key: str) -> bool:
        input_id = input_id_of_key(key)
        return input_id is not None and not (await self.inputs.exists([input_id]))[0]

    async def _dead_upload(
        self, upload: ListedBlob, now: int, cache: dict[str, Job | None]
    ) -> bool:
        """An output upload lives exactly as long as its attempt runs (its start time is not
        needed, which some S3-compatible servers do not report truly); an input upload
        lives for the grace."""
        name = parse_output_key(upload.key)
        if name is not None:
            return not _live_attempt(await self._job(name.job_id, cache), name.tag)
        if now - upload.modified_ms < self.grace_ms:
            return False
        return input_id_of_key(upload.key) is not None and await self._dead_input(upload.key)

    async def run(self, interval_s: float) -> None:
        """Sweep every `interval_s` s until cancelled; a failed sweep is retried with
        backoff and never ends the loop."""
        pacer = Pacer(Backoff(base_ms=1_000, cap_ms=max(1_000, int(interval_s * 1000))))
        while True:
            try:
                await self.sweep_once()
            except StoreError as exc:
                log.warning("sweep_failed", error=exc.detail, retry_in_s=pacer.delay_s)
                await pacer.sleep()
                continue
            pacer.reset()
            await asyncio.sleep(interval_s)
