"""A job's outputs in the blob store: where each one goes and how long it is kept.

The bytes go to the configured `BlobStore` (Redis or S3, see comfyfleet.blobs); the job
keeps each output's object key, size, content type and sha256 (`OutputRef`), so Redis
holds metadata only when the store is S3. Retention is per pool (`output_ttl_s`, "*" for
the rest): a TTL on the Redis key, and in S3 the sweeper's (or a lifecycle rule's) work.
"""

from __future__ import annotations

from collections.abc import AsyncIterable

from comfyfleet.blobs import BlobStore, OutputTooLarge, StoredBlob
from comfyfleet.blobs.naming import attempt_tag, output_key
from comfyfleet.config import BlobConfig
from comfyfleet.models.job import Job
from comfyfleet.web.responses import safe_filename

__all__ = ["DEFAULT_RESULT_TTL_MS", "OutputTooLarge", "ResultStore"]

DEFAULT_RESULT_TTL_MS = 24 * 3600 * 1000
# S3 outputs live as long as the job record by default (store/jobs.py's retention).
DEFAULT_S3_RESULT_TTL_MS = 7 * 24 * 3600 * 1000


class ResultStore:
    """Outputs of jobs, by job, attempt and index. Times in ms."""

    def __init__(self, blobs: BlobStore, cfg: BlobConfig | None = None) -> None:
        self.blobs = blobs
        self.cfg = cfg or BlobConfig()

    def ttl_ms(self, pool: str) -> int:
        """How long `pool`'s outputs are kept (ms)."""
        ttls = self.cfg.output_ttl_s
        seconds = ttls.get(pool, ttls.get("*"))
        if seconds is not None:
            return seconds * 1000
        return DEFAULT_S3_RESULT_TTL_MS if self.blobs.kind == "s3" else DEFAULT_RESULT_TTL_MS

    def key(self, job: Job, index: int, filename: str) -> str:
        tag = attempt_tag(job.attempts, job.started_ms)
        return output_key(job.pool, job.id, tag, index, safe_filename(filename))

    async def put(
        self, job: Job, index: int, filename: str, chunks: AsyncIterable[bytes], *,
        content_type: str,
    ) -> StoredBlob:  # fmt: skip
        """Stream one output of the job's current attempt into the store (visible only once
        whole). OutputTooLarge past the store's cap."""
        return await self.blobs.put_stream(
            self.key(job, index, filename), chunks, content_type=content_type,
            ttl_ms=self.ttl_ms(job.pool),
        )  # fmt: skip
