"""Raw HTTP over a socket, for requests no client library will send."""

from __future__ import annotations

import asyncio


async def exchange(url: str, raw: bytes, *, timeout_s: float = 10.0) -> bytes:
    """Send `raw` to the server at `url` (http://host:port) and read until it closes."""
    host, port = url.removeprefix("http://").rsplit(":", 1)
    reader, writer = await asyncio.open_connection(host, int(port))
    try:
        writer.write(raw)
        await writer.drain()
        return await asyncio.wait_for(reader.read(), timeout_s)
    finally:
        writer.close()


def split(response: bytes) -> tuple[int, bytes, bytes]:
    """(status, head, body) of a raw HTTP response."""
    head, _, body = response.partition(b"\r\n\r\n")
    return int(head.split(b" ", 2)[1]), head, body
