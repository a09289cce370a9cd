"""Images and masks for the stand-in, with a pure-Python PNG writer and reader.

Pixels are 8-bit RGB rows packed in one `bytes` (width*height*3); masks are 8-bit grey
(width*height). Whole-row `bytes` operations (repeat, translate, slice) keep the common
cases (solid colours, inversion, copies) fast without numpy or Pillow. Everything here is
CPU-bound: the executor calls it from a worker thread, never on the event loop.
"""

from __future__ import annotations

import random
import struct
import zlib
from dataclasses import dataclass
from pathlib import Path

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
INVERT_TABLE = bytes(255 - i for i in range(256))


class UnidentifiedImageError(Exception):
    """A file that is not an image we can read (Pillow's name, which ComfyUI reports)."""


@dataclass(frozen=True)
class Image:
    width: int
    height: int
    rgb: bytes

    def row(self, y: int) -> bytes:
        stride = self.width * 3
        return self.rgb[y * stride : (y + 1) * stride]


@dataclass(frozen=True)
class Mask:
    width: int
    height: int
    grey: bytes


def solid(width: int, height: int, color: int) -> Image:
    """An image filled with a 0xRRGGBB colour."""
    pixel = bytes(((color >> 16) & 0xFF, (color >> 8) & 0xFF, color & 0xFF))
    return Image(width, height, pixel * (width * height))


def solid_mask(width: int, height: int, value: float) -> Mask:
    level = max(0, min(255, round(value * 255)))
    return Mask(width, height, bytes((level,)) * (width * height))


def noise(width: int, height: int, seed: int) -> Image:
    """Deterministic noise for a seed: what a sampled-and-decoded latent looks like here."""
    return Image(width, height, random.Random(seed).randbytes(width * height * 3))


def invert(image: Image) -> Image:
    return Image(image.width, image.height, image.rgb.translate(INVERT_TABLE))


def scale(image: Image, width: int, height: int) -> Image:
    """Nearest-neighbour resize (stands in for every upscale method)."""
    if width == 0 and height == 0:
        return image
    if width == 0:
        width = max(1, round(image.width * height / image.height))
    elif height == 0:
        height = max(1, round(image.height * width / image.width))
    columns = [min(image.width - 1, x * image.width // width) for x in range(width)]
    done: dict[bytes, bytes] = {}
    rows = []
    for y in range(height):
        source = image.row(min(image.height - 1, y * image.height // height))
        out = done.get(source)
        if out is None:
            out = b"".join(source[c * 3 : c * 3 + 3] for c in columns)
            done[source] = out
        rows.append(out)
    return Image(width, height, b"".join(rows))


def composite(dest: Image, source: Image, x: int, y: int, mask: Mask | None) -> Image:
    """Paste `source` at (x, y); mask pixels >= 128 take the source (a hard-edged blend)."""
    rows = [bytearray(dest.row(r)) for r in range(dest.height)]
    width = min(source.width, dest.width - x)
    for sy in range(min(source.height, dest.height - y)):
        if width <= 0:
            break
        src_row = source.row(sy)[: width * 3]
        target = rows[y + sy]
        if mask is None or _mask_row_full(mask, sy, width):
            target[x * 3 : (x + width) * 3] = src_row
            continue
        for sx in range(width):
            if _mask_at(mask, sx, sy) >= 128:
                target[(x + sx) * 3 : (x + sx) * 3 + 3] = src_row[sx * 3 : sx * 3 + 3]
    return Image(dest.width, dest.height, b"".join(bytes(r) for r in rows))


def _mask_at(mask: Mask, x: int, y: int) -> int:
    if x >= mask.width or y >= mask.height:
        return 0
    return mask.grey[y * mask.width + x]


def _mask_row_full(mask: Mask, y: int, width: int) -> bool:
    if y >= mask.height or width > mask.width:
        return False
    return min(mask.grey[y * mask.width : y * mask.width + width], default=0) >= 128


def encode_png(image: Image, text: dict[str, str] | None = None, level: int = 4) -> bytes:
    """A valid 8-bit RGB PNG; `text` becomes tEXt chunks (keys and values latin-1)."""
    stride = image.width * 3
    raw = b"".join(b"\x00" + image.rgb[y * stride : (y + 1) * stride] for y in range(image.height))
    ihdr = struct.pack(">IIBBBBB", image.width, image.height, 8, 2, 0, 0, 0)
    chunks = [_chunk(b"IHDR", ihdr)]
    for key, value in (text or {}).items():
        chunks.append(_chunk(b"tEXt", key.encode("latin-1") + b"\x00" + value.encode("latin-1")))
    chunks.append(_chunk(b"IDAT", zlib.compress(raw, level)))
    chunks.append(_chunk(b"IEND", b""))
    return PNG_SIGNATURE + b"".join(chunks)


# A private, ancillary, safe-to-copy chunk type: decoders skip it.
PAD_CHUNK = b"cfPd"
PAD_BLOCK = 1024 * 1024


def write_padded_png(path: Path, png: bytes, size: int) -> None:
    """Write `png` grown to `size` bytes by a PAD_CHUNK of zeros before IEND, streamed to
    disk a block at a time (tests of large outputs: a valid PNG of any size)."""
    iend = png.rindex(b"IEND") - 4
    pad = max(0, size - len(png) - 12)
    crc = zlib.crc32(PAD_CHUNK)
    tmp = path.with_name(path.name + ".part")
    with tmp.open("wb") as out:
        out.write(png[:iend] + struct.pack(">I", pad) + PAD_CHUNK)
        block = bytes(PAD_BLOCK)
        left = pad
        while left:
            piece = block[: min(left, PAD_BLOCK)]
            crc = zlib.crc32(piece, crc)
            out.write(piece)
            left -= len(piece)
        out.write(struct.pack(">I", crc & 0xFFFFFFFF) + png[iend:])
    tmp.replace(path)


def _chunk(kind: bytes, data: bytes) -> bytes:
    crc = zlib.crc32(kind + data) & 0xFFFFFFFF
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)


def png_size(data: bytes) -> tuple[int, int]:
    """(width, height) from a PNG's IHDR; UnidentifiedImageError when it is not one."""
    if not data.startswith(PNG_SIGNATURE) or data[12:16] != b"IHDR" or len(data) < 24:
        raise UnidentifiedImageError("not a PNG")
    width, height = struct.unpack(">II", data[16:24])
    return width, height


def decode(data: bytes) -> Image:
    """Read an 8-bit PNG (grey, RGB, grey+alpha, RGBA; not interlaced) into RGB pixels.

    Other valid PNGs (palette, 16-bit, interlaced) come back as mid-grey images of the
    right size: the stand-in needs sizes to be right, not pixels.
    """
    width, height = png_size(data)
    try:
        chunks = _read_chunks(data)
        ihdr = chunks[0][1]
        depth, colour, interlace = ihdr[8], ihdr[9], ihdr[12]
        idat = zlib.decompress(b"".join(body for kind, body in chunks if kind == b"IDAT"))
    except (zlib.error, IndexError, struct.error) as exc:
        raise UnidentifiedImageError("truncated or corrupt PNG") from exc
    channels = {0: 1, 2: 3, 4: 2, 6: 4}.get(colour)
    if depth != 8 or channels is None or interlace:
        return solid(width, height, 0x808080)
    rows = _unfilter(idat, width * channels, height, channels)
    return Image(width, height, b"".join(_to_rgb(row, channels) for row in rows))


def _read_chunks(data: bytes) -> list[tuple[bytes, bytes]]:
    chunks, pos = [], 8
    while pos + 8 <= len(data):
        (length,) = struct.unpack(">I", data[pos : pos + 4])
        kind = data[pos + 4 : pos + 8]
        chunks.append((kind, data[pos + 8 : pos + 8 + length]))
        pos += 12 + length
        if kind == b"IEND":
            break
    return chunks


def _unfilter(raw: bytes, stride: int, height: int, bpp: int) -> list[bytes]:
    rows: list[bytes] = []
    prev = bytes(stride)
    for y in range(height):
        start = y * (stride + 1)
        kind, line = raw[start], bytearray(raw[start + 1 : start + 1 + stride])
        if len(line) != stride:
            raise UnidentifiedImageError("truncated PNG data")
        for i in range(stride) if kind else ():
            left = line[i - bpp] if i >= bpp else 0
            up = prev[i]
            if kind == 1:
                line[i] = (line[i] + left) & 0xFF
            elif kind == 2:
                line[i] = (line[i] + up) & 0xFF
            elif kind == 3:
                line[i] = (line[i] + (left + up) // 2) & 0xFF
            elif kind == 4:
                corner = prev[i - bpp] if i >= bpp else 0
                line[i] = (line[i] + _paeth(left, up, corner)) & 0xFF
        prev = bytes(line)
        rows.append(prev)
    return rows


def _paeth(a: int, b: int, c: int) -> int:
    p = a + b - c
    pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
    if pa <= pb and pa <= pc:
        return a
    return b if pb <= pc else c


def _to_rgb(row: bytes, channels: int) -> bytes:
    if channels == 3:
        return row
    if channels == 4:
        out = bytearray(len(row) // 4 * 3)
        out[0::3], out[1::3], out[2::3] = row[0::4], row[1::4], row[2::4]
        return bytes(out)
    grey = row[0::channels]
    out = bytearray(len(grey) * 3)
    out[0::3] = out[1::3] = out[2::3] = grey
    return bytes(out)
