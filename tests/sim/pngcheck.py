"""An independent PNG reader for tests: chunk CRCs, IHDR size, text chunks, pixel data."""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

SIGNATURE = b"\x89PNG\r\n\x1a\n"


def chunks(data: bytes) -> list[tuple[bytes, bytes]]:
    assert data.startswith(SIGNATURE), "not a PNG signature"
    out, pos = [], 8
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos : pos + 4])
        kind, body = data[pos + 4 : pos + 8], data[pos + 8 : pos + 8 + length]
        (crc,) = struct.unpack(">I", data[pos + 8 + length : pos + 12 + length])
        assert zlib.crc32(kind + body) & 0xFFFFFFFF == crc, f"bad CRC in {kind!r}"
        out.append((kind, body))
        pos += 12 + length
    assert out[0][0] == b"IHDR"
    assert out[-1][0] == b"IEND"
    return out


def check_png(data: bytes) -> tuple[int, int]:
    """Validate the file end to end and return (width, height)."""
    parts = chunks(data)
    width, height, depth, colour = struct.unpack(">IIBB", parts[0][1][:10])
    channels = {0: 1, 2: 3, 4: 2, 6: 4}[colour]
    raw = zlib.decompress(b"".join(body for kind, body in parts if kind == b"IDAT"))
    assert depth == 8
    assert len(raw) == height * (width * channels + 1), "IDAT size does not match IHDR"
    return width, height


def text_chunks(data: bytes) -> dict[str, str]:
    out = {}
    for kind, body in chunks(data):
        if kind == b"tEXt":
            key, _, value = body.partition(b"\x00")
            out[key.decode("latin-1")] = value.decode("latin-1")
    return out


def png_file_size(path: Path) -> tuple[int, int]:
    return check_png(path.read_bytes())
