"""The S3 blob store: bytes in any S3-compatible object store (AWS S3, R2, GCS's S3 API,
MinIO, Ceph), through aiobotocore (botocore's request signing, retries, credential chain and
presigning, over aiohttp, which the roles already use).

A blob smaller than one part is one PUT. A larger one is a multipart upload: the node holds
one part (`part_size` bytes) at a time, and the object appears only when the upload is
completed; any failure aborts it. An upload whose writer died (SIGKILL) stays invisible
until the sweeper aborts it. Keys are `prefix + key`; the prefix comes from the store URL.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncGenerator, AsyncIterable, AsyncIterator, Iterable
from contextlib import AsyncExitStack
from typing import TYPE_CHECKING, Any

import structlog
from aiobotocore.config import AioConfig
from aiobotocore.session import get_session
from botocore.exceptions import BotoCoreError, ClientError

from comfyfleet.blobs.base import BlobStoreUnavailable, ByteRange, ListedBlob, StoredBlob, Tally
from comfyfleet.config import BlobConfig
from comfyfleet.errors import ConfigError
from comfyfleet.web.responses import content_disposition

if TYPE_CHECKING:
    from types_aiobotocore_s3 import S3Client
    from types_aiobotocore_s3.type_defs import CompletedPartTypeDef, ObjectIdentifierTypeDef

log = structlog.get_logger(__name__)

DEFAULT_MAX_BYTES = 5 * 1024 * 1024 * 1024
READ_CHUNK_BYTES = 1024 * 1024
DELETE_BATCH = 1000  # DeleteObjects takes at most this many keys
_MISSING = frozenset({"NoSuchKey", "404", "NotFound"})


def _unavailable(exc: Exception, what: str) -> BlobStoreUnavailable:
    return BlobStoreUnavailable(f"object store: {what} failed: {exc}")


def _missing(exc: ClientError) -> bool:
    return str(exc.response.get("Error", {}).get("Code")) in _MISSING


class S3BlobStore:
    kind = "s3"

    def __init__(self, client: S3Client, cfg: BlobConfig, stack: AsyncExitStack) -> None:
        self.client = client
        self.bucket = cfg.bucket
        self.prefix = cfg.prefix
        self.part_size = cfg.part_size
        self.max_bytes = cfg.max_output_bytes or DEFAULT_MAX_BYTES
        self._stack = stack

    @classmethod
    async def open(cls, cfg: BlobConfig) -> S3BlobStore:
        """A store on a client of its own; ConfigError when the bucket is missing or
        refused (an unreachable endpoint is only logged: it may come up later)."""
        stack = AsyncExitStack()
        secret = cfg.s3_secret_access_key
        client = await stack.enter_async_context(
            get_session().create_client(
                "s3",
                endpoint_url=cfg.s3_endpoint_url,
                region_name=cfg.s3_region,
                aws_access_key_id=cfg.s3_access_key_id,
                aws_secret_access_key=secret.get_secret_value() if secret else None,
                config=AioConfig(
                    signature_version="s3v4",
                    s3={"addressing_style": "path" if cfg.s3_path_style else "auto"},
                    retries={"max_attempts": 3, "mode": "standard"},
                    connect_timeout=5,
                    read_timeout=60,
                    # Checksums only where S3 requires them: several S3-compatible stores
                    # refuse the newer default trailers.
                    request_checksum_calculation="when_required",
                    response_checksum_validation="when_required",
                ),
            )
        )
        store = cls(client, cfg, stack)
        await store._check_bucket()
        return store

    async def _check_bucket(self) -> None:
        try:
            await self.client.head_bucket(Bucket=self.bucket)
        except ClientError as exc:
            await self.close()
            code = exc.response.get("Error", {}).get("Code")
            raise ConfigError(f"object store bucket {self.bucket!r}: {code} ({exc})") from None
        except (BotoCoreError, OSError) as exc:
            log.warning("object_store_unreachable", bucket=self.bucket, error=str(exc))

    async def close(self) -> None:
        await self._stack.aclose()

    async def put_stream(
        self, key: str, chunks: AsyncIterable[bytes], *, content_type: str,
        ttl_ms: int | None = None, max_bytes: int | None = None,
    ) -> StoredBlob:  # fmt: skip
        tally = Tally(key, max_bytes or self.max_bytes)
        upload = _Multipart(self, self.prefix + key, content_type)
        part = bytearray()
        try:
            async for chunk in chunks:
                tally.add(chunk)
                part += chunk
                if len(part) >= self.part_size:
                    await upload.add(bytes(part))
                    part.clear()
            await upload.finish(bytes(part))
        except BaseException:
            # Shielded: a cancelled writer must still take its parts back out.
            await asyncio.shield(upload.abort())
            raise
        return tally.stored(content_type)

    async def size(self, key: str) -> int | None:
        try:
            head = await self.client.head_object(Bucket=self.bucket, Key=self.prefix + key)
        except ClientError as exc:
            if _missing(exc):
                return None
            raise _unavailable(exc, "HEAD") from exc
        except (BotoCoreError, OSError) as exc:
            raise _unavailable(exc, "HEAD") from exc
        return int(head["ContentLength"])

    async def read(
        self, key: str, byte_range: ByteRange | None = None
    ) -> AsyncGenerator[bytes, None]:
        extra: dict[str, Any] = {}
        if byte_range is not None:
            extra["Range"] = f"bytes={byte_range.start}-{byte_range.end}"
        try:
            reply = await self.client.get_object(Bucket=self.bucket, Key=self.prefix + key, **extra)
        except ClientError as exc:
            if _missing(exc):
                return
            raise _unavailable(exc, "GET") from exc
        except (BotoCoreError, OSError) as exc:
            raise _unavailable(exc, "GET") from exc
        body = reply["Body"]
        try:
            async for chunk in body.iter_chunks(READ_CHUNK_BYTES):
                yield chunk
        except (TimeoutError, BotoCoreError, OSError) as exc:
            raise _unavailable(exc, "GET body") from exc
        finally:
            body.close()

    async def delete(self, keys: Iterable[str]) -> None:
        names = [self.prefix + k for k in keys]
        for start in range(0, len(names), DELETE_BATCH):
            batch: list[ObjectIdentifierTypeDef] = [
                {"Key": n} for n in names[start : start + DELETE_BATCH]
            ]
            try:
                await self.client.delete_objects(
                    Bucket=self.bucket, Delete={"Objects": batch, "Quiet": True}
                )
            except (ClientError, BotoCoreError, OSError) as exc:
                raise _unavailable(exc, "DELETE") from exc

    async def presign(self, key: str, *, filename: str, expires_s: int) -> str | None:
        params = {
            "Bucket": self.bucket,
            "Key": self.prefix + key,
            "ResponseContentDisposition": content_disposition(filename),
        }
        url: str = await self.client.generate_presigned_url(
            "get_object", Params=params, ExpiresIn=expires_s
        )
        return url

    async def list_blobs(self, prefix: str) -> AsyncIterator[ListedBlob]:
        pages = self.client.get_paginator("list_objects_v2").paginate(
            Bucket=self.bucket, Prefix=self.prefix + prefix
        )
        try:
            async for page in pages:
                for item in page.get("Contents", []):
                    key = item["Key"].removeprefix(self.prefix)
                    yield ListedBlob(key, int(item["LastModified"].timestamp() * 1000))
        except (ClientError, BotoCoreError, OSError) as exc:
            raise _unavailable(exc, "LIST") from exc

    async def list_uploads(self, prefix: str) -> AsyncIterator[ListedBlob]:
        pages = self.client.get_paginator("list_multipart_uploads").paginate(
            Bucket=self.bucket, Prefix=self.prefix + prefix
        )
        try:
            async for page in pages:
                for item in page.get("Uploads", []):
                    key = item["Key"].removeprefix(self.prefix)
                    started = int(item["Initiated"].timestamp() * 1000)
                    yield ListedBlob(key, started, upload_id=item["UploadId"])
        except (ClientError, BotoCoreError, OSError) as exc:
            raise _unavailable(exc, "LIST uploads") from exc

    async def abort_upload(self, key: str, upload_id: str) -> None:
        try:
            await self.client.abort_multipart_upload(
                Bucket=self.bucket, Key=self.prefix + key, UploadId=upload_id
            )
        except ClientError as exc:
            if str(exc.response.get("Error", {}).get("Code")) != "NoSuchUpload":
                raise _unavailable(exc, "abort upload") from exc
        except (BotoCoreError, OSError) as exc:
            raise _unavailable(exc, "abort upload") from exc


class _Multipart:
    """One object being written: a single PUT if it fits one part, else a multipart
    upload started with the first full part."""

    def __init__(self, store: S3BlobStore, name: str, content_type: str) -> None:
        self.store = store
        self.name = name
        self.content_type = content_type
        self.upload_id: str | None = None
        self.parts: list[CompletedPartTypeDef] = []

    async def add(self, data: bytes) -> None:
        client, bucket = self.store.client, self.store.bucket
        try:
            if self.upload_id is None:
                started = await client.create_multipart_upload(
                    Bucket=bucket, Key=self.name, ContentType=self.content_type
                )
                self.upload_id = started["UploadId"]
            number = len(self.parts) + 1
            reply = await client.upload_part(
                Bucket=bucket, Key=self.name, UploadId=self.upload_id, PartNumber=number,
                Body=data,
            )  # fmt: skip
        except (ClientError, BotoCoreError, OSError) as exc:
            raise _unavailable(exc, "upload part") from exc
        self.parts.append({"ETag": reply["ETag"], "PartNumber": number})

    async def finish(self, rest: bytes) -> None:
        client, bucket = self.store.client, self.store.bucket
        try:
            if self.upload_id is None:
                await client.put_object(
                    Bucket=bucket, Key=self.name, Body=rest, ContentType=self.content_type
                )
                return
            if rest:
                await self.add(rest)
            await client.complete_multipart_upload(
                Bucket=bucket, Key=self.name, UploadId=self.upload_id,
                MultipartUpload={"Parts": self.parts},
            )  # fmt: skip
        except (ClientError, BotoCoreError, OSError) as exc:
            raise _unavailable(exc, "complete upload") from exc

    async def abort(self) -> None:
        """Best effort: an upload left behind is invisible and the sweeper aborts it."""
        if self.upload_id is not None:
            with contextlib.suppress(BlobStoreUnavailable):
                await self.store.abort_upload(self.name.removeprefix(self.store.prefix),
                                              self.upload_id)  # fmt: skip
