"""Reading Server-Sent Events in tests: a small parser over an aiohttp response."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import aiohttp
import orjson


@dataclass(frozen=True)
class Sse:
    """One dispatched event; `id` None when the event carried no id line."""

    event: str
    data: dict[str, Any]
    id: str | None


async def events(resp: aiohttp.ClientResponse) -> AsyncIterator[Sse]:
    """The events of an event stream as they arrive (comments and `retry:` skipped)."""
    fields: dict[str, str] = {}
    data: list[str] = []
    async for raw in resp.content:
        line = raw.decode().rstrip("\r\n")
        if not line:
            if data:
                yield Sse(fields.get("event", "message"), orjson.loads("\n".join(data)),
                          fields.get("id"))  # fmt: skip
            fields, data = {}, []
        elif line.startswith(":"):
            continue
        else:
            name, _, value = line.partition(":")
            value = value.removeprefix(" ")
            if name == "data":
                data.append(value)
            else:
                fields[name] = value


async def read_all(resp: aiohttp.ClientResponse) -> list[Sse]:
    return [event async for event in events(resp)]
