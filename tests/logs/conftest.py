"""A fake Logdy: a real TCP line server on loopback, and a clean logging setup per test."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Iterator
from typing import Any

import orjson
import pytest
import structlog

DEADLINE_S = 5.0


class LineServer:
    """Reads `\\n`-terminated JSON lines like `logdy socket PORT` does; can hang up on the
    first connection after `hang_up_after` lines, to test reconnects."""

    def __init__(self, hang_up_after: int | None = None) -> None:
        self.hang_up_after = hang_up_after
        self.lines: asyncio.Queue[tuple[int, dict[str, Any]]] = asyncio.Queue()
        self.connections: asyncio.Queue[int] = asyncio.Queue()
        self.line_sizes: list[int] = []
        self.accepted = 0
        self.port = 0
        self._server: asyncio.Server | None = None
        self._handlers: set[asyncio.Task[None]] = set()

    async def start(self, port: int = 0) -> LineServer:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", port)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._handlers.add(task)
        self.accepted += 1
        number = self.accepted
        self.connections.put_nowait(number)
        seen = 0
        try:
            # readline() refuses lines over the StreamReader's 64 KiB limit, as Logdy would.
            while line := await reader.readline():
                self.line_sizes.append(len(line))
                self.lines.put_nowait((number, orjson.loads(line)))
                seen += 1
                if number == 1 and seen == self.hang_up_after:
                    break
        finally:
            writer.close()
            self._handlers.discard(task)

    async def next_line(self) -> tuple[int, dict[str, Any]]:
        return await asyncio.wait_for(self.lines.get(), DEADLINE_S)

    async def next_event(self, event: str) -> tuple[int, dict[str, Any]]:
        """The next line whose `event` is `event`, skipping others, within the deadline."""

        async def find() -> tuple[int, dict[str, Any]]:
            while True:
                number, line = await self.lines.get()
                if line.get("event") == event:
                    return number, line

        return await asyncio.wait_for(find(), DEADLINE_S)

    async def next_connection(self) -> int:
        return await asyncio.wait_for(self.connections.get(), DEADLINE_S)

    async def aclose(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
        for task in list(self._handlers):
            task.cancel()
        await asyncio.gather(*self._handlers, return_exceptions=True)


@pytest.fixture
async def line_server() -> AsyncIterator[LineServer]:
    server = await LineServer().start()
    yield server
    await server.aclose()


@pytest.fixture(autouse=True)
def clean_logging() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    structlog.reset_defaults()
    structlog.contextvars.clear_contextvars()
    for handler in list(root.handlers):
        if handler not in handlers:
            root.removeHandler(handler)
    root.setLevel(level)
