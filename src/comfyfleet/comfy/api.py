"""ComfyUI's HTTP API, one typed method per route. `ComfyClient` adds the WebSocket.

Error mapping (see errors.py): connection errors and timeouts -> ComfyUnavailable, 5xx ->
ComfyServerError, unparseable 2xx -> ComfyProtocolError (all retryable ComfyError);
400 on /prompt -> PromptRejected, other 4xx -> ComfyRefused subclasses (not retryable).
"""

from __future__ import annotations

import asyncio
import inspect
import io
import os
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, Protocol, TypeVar

import aiohttp
import orjson
import structlog

from comfyfleet.comfy.errors import ComfyProtocolError, ComfyUnavailable, error_for_status
from comfyfleet.comfy.models import (
    Features,
    FolderType,
    HistoryEntry,
    ImageRef,
    LogsRaw,
    PromptAccepted,
    QueueState,
    SystemStats,
)
from comfyfleet.comfy.options import ComfyOptions

log = structlog.get_logger(__name__)
_M = TypeVar("_M", SystemStats, Features, LogsRaw)


class ByteSink(Protocol):
    """Where download() writes: a sync or async `write(bytes)` (a file, a StreamWriter...)."""

    def write(self, data: bytes, /) -> object: ...


class ComfyAPI:
    """The HTTP half of the client. Owns its aiohttp session unless one is given."""

    def __init__(
        self,
        base_url: str,
        *,
        session: aiohttp.ClientSession | None = None,
        client_id: str,
        options: ComfyOptions | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.client_id = client_id
        self.options = options or ComfyOptions()
        self._session = session
        self._owns_session = session is None

    @property
    def session(self) -> aiohttp.ClientSession:
        if self._session is None:
            self._session = aiohttp.ClientSession()
        return self._session

    async def close(self) -> None:
        if self._owns_session and self._session is not None:
            await self._session.close()
            self._session = None

    def url(self, path: str) -> str:
        """The URL of a route. /internal routes have no /api alias in ComfyUI."""
        prefix = "" if path.startswith("/internal") else self.options.api_prefix
        return f"{self.base_url}{prefix}{path}"

    # -- prompts and queue ------------------------------------------------------------

    async def submit(
        self,
        graph: dict[str, Any],
        *,
        prompt_id: str | None = None,
        front: bool = False,
        number: float | None = None,
        extra_data: dict[str, Any] | None = None,
        partial_execution_targets: Sequence[str] | None = None,
    ) -> PromptAccepted:
        """Queue an API-format graph under this client's client_id.

        `prompt_id`: choose the id (ComfyUI makes a uuid4 otherwise; it does not check for
        duplicates). `front`: run before every normal item (LIFO among front items).
        `number`: explicit queue key (lowest first; does not advance ComfyUI's counter).
        Raises PromptRejected on validation failure; a 200 may still list `node_errors`
        for outputs ComfyUI dropped.
        """
        body: dict[str, Any] = {"prompt": graph, "client_id": self.client_id}
        if prompt_id is not None:
            body["prompt_id"] = prompt_id
        if front:
            body["front"] = True
        if number is not None:
            body["number"] = number
        if extra_data is not None:
            body["extra_data"] = extra_data
        if partial_execution_targets is not None:
            body["partial_execution_targets"] = list(partial_execution_targets)
        answer = await self.request_json("POST", "/prompt", json=body)
        try:
            return PromptAccepted.model_validate(answer)
        except ValueError as exc:
            raise ComfyProtocolError(f"unexpected /prompt answer: {exc}") from exc

    async def queue(self) -> QueueState:
        """GET /queue; `pending` sorted in the order ComfyUI will run it."""
        return QueueState.from_wire(await self._json_object("GET", "/queue"))

    async def queue_remaining(self) -> int:
        """GET /prompt: running + pending."""
        body = await self._json_object("GET", "/prompt")
        return int(body.get("exec_info", {}).get("queue_remaining", 0))

    async def delete_from_queue(self, prompt_ids: Sequence[str]) -> None:
        """Remove pending prompts (running ones stay: interrupt them). Unknown ids are fine.
        A deleted prompt gets no event: trackers report it as `deleted`."""
        await self.request_json("POST", "/queue", json={"delete": list(prompt_ids)})

    async def clear_queue(self) -> None:
        """Remove every pending prompt (not the running one)."""
        await self.request_json("POST", "/queue", json={"clear": True})

    async def interrupt(self, prompt_id: str | None = None) -> None:
        """Stop the running prompt: only if it is `prompt_id` when given, else whatever runs.

        ComfyUI checks the flag between nodes, so a long node finishes first; an interrupt
        while idle is lost.
        """
        body = {} if prompt_id is None else {"prompt_id": prompt_id}
        await self.request_json("POST", "/interrupt", json=body)

    async def free(self, *, unload_models: bool = False, free_memory: bool = False) -> None:
        """Ask ComfyUI to unload models / free memory (applied when idle)."""
        body = {"unload_models": unload_models, "free_memory": free_memory}
        await self.request_json("POST", "/free", json=body)

    # -- history ----------------------------------------------------------------------

    async def history(self, prompt_id: str) -> HistoryEntry | None:
        """The finished prompt's entry; None while unknown, pending or running."""
        body = await self._json_object("GET", f"/history/{prompt_id}")
        entry = body.get(prompt_id)
        return None if entry is None else self._entry(prompt_id, entry)

    async def history_all(
        self, max_items: int | None = None, offset: int | None = None
    ) -> dict[str, HistoryEntry]:
        """Finished prompts in completion order; `max_items` keeps the last N."""
        params = {
            k: str(v) for k, v in (("max_items", max_items), ("offset", offset)) if v is not None
        }
        body = await self._json_object("GET", "/history", params=params)
        return {pid: self._entry(pid, entry) for pid, entry in body.items()}

    async def delete_history(self, prompt_ids: Sequence[str]) -> None:
        await self.request_json("POST", "/history", json={"delete": list(prompt_ids)})

    async def clear_history(self) -> None:
        await self.request_json("POST", "/history", json={"clear": True})

    # -- inventory and server info ------------------------------------------------------

    async def object_info(self, node_class: str | None = None) -> dict[str, Any]:
        """Node definitions; `{}` for an unknown `node_class`. All of them is ~300 KB."""
        path = "/object_info" if node_class is None else f"/object_info/{node_class}"
        return await self._json_object("GET", path)

    async def system_stats(self) -> SystemStats:
        return self._parse(SystemStats, await self._json_object("GET", "/system_stats"))

    async def models(self, folder: str | None = None) -> list[str]:
        """Model folder names, or the files in `folder` (ComfyNotFound if no such folder)."""
        return await self._json_list("GET", "/models" if folder is None else f"/models/{folder}")

    async def features(self) -> Features:
        return self._parse(Features, await self._json_object("GET", "/features"))

    async def embeddings(self) -> list[str]:
        return await self._json_list("GET", "/embeddings")

    async def extensions(self) -> list[str]:
        return await self._json_list("GET", "/extensions")

    async def folder_paths(self) -> dict[str, Any]:
        return await self._json_object("GET", "/internal/folder_paths")

    async def files(self, directory: FolderType = "output") -> list[str]:
        return await self._json_list("GET", f"/internal/files/{directory}")

    # -- logs -------------------------------------------------------------------------

    async def logs(self) -> str:
        """GET /internal/logs: ComfyUI answers one JSON string, lines `<iso-ts> - <msg>`."""
        body = await self.request_json("GET", "/internal/logs")
        if not isinstance(body, str):
            raise ComfyProtocolError("/internal/logs did not answer a string")
        return body

    async def logs_raw(self) -> LogsRaw:
        return self._parse(LogsRaw, await self._json_object("GET", "/internal/logs/raw"))

    async def subscribe_logs(self, enabled: bool = True) -> None:
        """Have ComfyUI send `logs` events to this client's socket (or stop)."""
        body = {"clientId": self.client_id, "enabled": enabled}
        await self.request_json("PATCH", "/internal/logs/subscribe", json=body)

    # -- files ------------------------------------------------------------------------

    async def upload_image(
        self,
        image: bytes | Path,
        filename: str | None = None,
        *,
        subfolder: str = "",
        type: FolderType = "input",
        overwrite: bool = False,
    ) -> ImageRef:
        """Upload to input/ (or temp/, output/). ComfyUI keeps the name for identical bytes
        and renames (`x (1).png`) for different bytes unless `overwrite`. The answer's
        name is the one to use in LoadImage."""
        if isinstance(image, Path):
            filename = filename or image.name
            image = await asyncio.to_thread(image.read_bytes)
        if not filename:
            raise ValueError("upload_image needs a filename for raw bytes")
        form = aiohttp.FormData()
        form.add_field("image", image, filename=filename, content_type="image/png")
        form.add_field("type", type)
        form.add_field("subfolder", subfolder)
        if overwrite:
            form.add_field("overwrite", "true")
        body = await self._json_object("POST", "/upload/image", data=form)
        return ImageRef(
            filename=body.get("name", ""), subfolder=body.get("subfolder", ""), type=body["type"]
        )

    async def view(
        self, ref: ImageRef, *, preview: str | None = None, channel: str | None = None
    ) -> bytes:
        """A file's bytes, whole in memory: for small files. Use download() for big ones.
        `preview="webp;90"` or `"jpeg;90"` and `channel="rgb"|"a"` make ComfyUI re-encode."""
        chunks = [chunk async for chunk in self.iter_view(ref, preview=preview, channel=channel)]
        return b"".join(chunks)

    async def download(self, ref: ImageRef, dest: str | os.PathLike[str] | ByteSink) -> int:
        """Stream a file to a path (written to `<dest>.part`, then renamed) or a sink, in
        chunks of `download_chunk_bytes`. Returns the byte count."""
        if not isinstance(dest, str | os.PathLike):
            return await self._download_to(ref, _sink_writer(dest))
        path = Path(dest)
        part = path.with_name(path.name + ".part")
        handle = await asyncio.to_thread(part.open, "wb")
        try:
            # File writes go to a thread: a slow disk must not stall the event loop.
            size = await self._download_to(ref, lambda c: asyncio.to_thread(handle.write, c))
        except BaseException:
            await asyncio.to_thread(handle.close)
            await asyncio.to_thread(part.unlink, True)
            raise
        await asyncio.to_thread(handle.close)
        await asyncio.to_thread(part.replace, path)
        return size

    async def iter_view(
        self, ref: ImageRef, *, preview: str | None = None, channel: str | None = None
    ) -> AsyncIterator[bytes]:
        """The file's bytes as they arrive, without holding the whole file."""
        params = ref.query()
        if preview is not None:
            params["preview"] = preview
        if channel is not None:
            params["channel"] = channel
        timeout = aiohttp.ClientTimeout(
            total=None,
            sock_connect=self.options.connect_timeout_s,
            sock_read=self.options.read_timeout_s,
        )
        async with self._response("GET", "/view", params=params, client_timeout=timeout) as resp:
            try:
                async for chunk in resp.content.iter_chunked(self.options.download_chunk_bytes):
                    yield chunk
            except (aiohttp.ClientError, TimeoutError) as exc:
                raise ComfyUnavailable(f"download of {ref.filename} broke off: {exc!r}") from exc

    async def _download_to(self, ref: ImageRef, write: Callable[[bytes], Awaitable[object]]) -> int:
        size = 0
        async for chunk in self.iter_view(ref):
            await write(chunk)
            size += len(chunk)
        return size

    # -- plumbing ---------------------------------------------------------------------

    async def request_json(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        params: dict[str, str] | None = None,
        data: aiohttp.FormData | None = None,
    ) -> Any:
        """Any route: the decoded JSON answer, or None for an empty body. For routes this
        class does not wrap; errors are mapped as for the typed methods."""
        # A file object, not bytes: aiohttp warns that raw bytes over 1 MiB block the loop
        # while it sends them, and a large workflow (a big graph) is a legitimate prompt.
        payload = None if json is None else io.BytesIO(orjson.dumps(json))
        headers = {"Content-Type": "application/json"} if payload is not None else None
        body = data if data is not None else payload
        async with self._response(method, path, params=params, data=body, headers=headers) as r:
            raw = await self._read(r)
        if not raw:
            return None
        try:
            return orjson.loads(raw)
        except orjson.JSONDecodeError as exc:
            raise ComfyProtocolError(f"{method} {path} answered non-JSON: {raw[:80]!r}") from exc

    @asynccontextmanager
    async def _response(
        self,
        method: str,
        path: str,
        *,
        client_timeout: aiohttp.ClientTimeout | None = None,
        **kwargs: Any,
    ) -> AsyncIterator[aiohttp.ClientResponse]:
        timeout = client_timeout or aiohttp.ClientTimeout(
            total=self.options.request_timeout_s, sock_connect=self.options.connect_timeout_s
        )
        try:
            async with self.session.request(
                method, self.url(path), timeout=timeout, **kwargs
            ) as resp:
                if resp.status >= 400:
                    await self._raise_for(method, path, resp)
                yield resp
        except (aiohttp.ClientConnectionError, aiohttp.ClientPayloadError, TimeoutError) as exc:
            raise ComfyUnavailable(f"{method} {path}: {exc!r}") from exc

    async def _raise_for(self, method: str, path: str, resp: aiohttp.ClientResponse) -> None:
        raise error_for_status(method, path, resp.status, await self._read(resp))

    @staticmethod
    async def _read(resp: aiohttp.ClientResponse) -> bytes:
        try:
            return await resp.read()
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise ComfyUnavailable(f"reading the answer failed: {exc!r}") from exc

    async def _json_object(self, method: str, path: str, **kwargs: Any) -> dict[str, Any]:
        body = await self.request_json(method, path, **kwargs)
        if not isinstance(body, dict):
            raise ComfyProtocolError(f"{method} {path} did not answer a JSON object")
        return body

    async def _json_list(self, method: str, path: str) -> list[str]:
        body = await self.request_json(method, path)
        if not isinstance(body, list):
            raise ComfyProtocolError(f"{method} {path} did not answer a JSON list")
        return [str(item) for item in body]

    @staticmethod
    def _parse(model: type[_M], body: dict[str, Any]) -> _M:
        try:
            return model.model_validate(body)
        except ValueError as exc:
            raise ComfyProtocolError(f"unexpected {model.__name__} answer: {exc}") from exc

    @staticmethod
    def _entry(prompt_id: str, body: Any) -> HistoryEntry:
        try:
            return HistoryEntry.from_wire(prompt_id, body)
        except (ValueError, AttributeError, TypeError) as exc:
            raise ComfyProtocolError(f"unexpected history entry: {exc}") from exc


def _sink_writer(sink: ByteSink) -> Callable[[bytes], Awaitable[object]]:
    """A sink's write as a coroutine function, whether its write is sync or async."""

    async def write(chunk: bytes) -> object:
        written = sink.write(chunk)
        return await written if inspect.isawaitable(written) else written

    return write
