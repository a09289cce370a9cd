"""A TCP proxy on loopback that a test can cut and heal: a network partition between one
process and Redis, without touching either.

`cut` stops forwarding in both directions on every open connection and leaves new ones
hanging unanswered (packets dropped, as in a real partition: the client sees timeouts, not
refusals); `heal` closes what was cut, so clients reconnect, and forwards again."""

from __future__ import annotations

import asyncio
import contextlib

from comfyfleet.tasks import stop

CHUNK = 65536


class PartitionProxy:
    def __init__(self, upstream_host: str, upstream_port: int) -> None:
        self.upstream = (upstream_host, upstream_port)
        self.port = 0
        self.cut_off = False
        self._server: asyncio.Server | None = None
        self._pipes: set[asyncio.Task[None]] = set()
        self._held: list[asyncio.StreamWriter] = []

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
        await self._drop_all()

    async def cut(self) -> None:
        self.cut_off = True
        # Stop forwarding but keep the sockets open: the client's reads just hang.
        await stop(*self._pipes, report=False)
        self._pipes.clear()

    async def heal(self) -> None:
        await self._drop_all()
        self.cut_off = False

    async def _drop_all(self) -> None:
        await stop(*self._pipes, report=False)
        self._pipes.clear()
        for writer in self._held:
            writer.close()
        self._held.clear()

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._held.append(writer)
        if self.cut_off:
            return  # accepted, never answered
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.upstream)
        except OSError:
            writer.close()
            return
        self._held.append(up_writer)
        for source, sink in ((reader, up_writer), (up_reader, writer)):
            task = asyncio.create_task(self._pipe(source, sink))
            self._pipes.add(task)
            task.add_done_callback(self._pipes.discard)

    @staticmethod
    async def _pipe(source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
        with contextlib.suppress(ConnectionError, OSError):
            while data := await source.read(CHUNK):
                sink.write(data)
                await sink.drain()
        sink.close()
