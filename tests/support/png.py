"""Checking PNG bytes without an imaging library: signature, IHDR, CRCs."""

from __future__ import annotations

import struct
import zlib

SIGNATURE = b"\x89PNG\r\n\x1a\n"


def png_size(data: bytes) -> tuple[int, int]:
    """(width, height) of a valid PNG; AssertionError naming what is wrong otherwise."""
    assert data[:8] == SIGNATURE, "not a PNG signature"
    pos = 8
    size: tuple[int, int] | None = None
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos : pos + 4])
        kind = data[pos + 4 : pos + 8]
        body = data[pos + 8 : pos + 8 + length]
        (crc,) = struct.unpack(">I", data[pos + 8 + length : pos + 12 + length])
        assert zlib.crc32(kind + body) == crc, f"bad CRC in {kind!r} chunk"
        if kind == b"IHDR":
            width, height = struct.unpack(">II", body[:8])
            size = (width, height)
        if kind == b"IEND":
            break
        pos += 12 + length
    assert size is not None, "no IHDR chunk"
    return size
