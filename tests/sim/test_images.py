"""The pure-Python image helpers: valid PNGs, sizes, round trips."""

from __future__ import annotations

import zlib

import pytest

from comfyfleet.sim import images
from tests.sim.pngcheck import check_png, text_chunks


def test_png_is_valid_and_round_trips() -> None:
    image = images.noise(17, 5, seed=3)
    data = images.encode_png(image, {"prompt": '{"1": {}}'})
    assert check_png(data) == (17, 5)
    assert text_chunks(data) == {"prompt": '{"1": {}}'}
    assert images.decode(data) == image


@pytest.mark.parametrize("filter_type", [1, 2, 3, 4])
def test_decode_undoes_every_png_filter(filter_type: int) -> None:
    image = images.noise(4, 3, seed=filter_type)
    raw = b""
    prev = bytes(12)
    for y in range(3):
        row = image.row(y)
        raw += bytes([filter_type]) + _filter(filter_type, row, prev)
        prev = row
    data = images.encode_png(image)
    start = data.index(b"IDAT") - 4
    end = data.index(b"IEND") - 4
    idat = zlib.compress(raw)
    chunk = len(idat).to_bytes(4, "big") + b"IDAT" + idat
    chunk += (zlib.crc32(b"IDAT" + idat) & 0xFFFFFFFF).to_bytes(4, "big")
    assert images.decode(data[:start] + chunk + data[end:]) == image


def _filter(kind: int, row: bytes, prev: bytes) -> bytes:
    out = bytearray()
    for i, value in enumerate(row):
        left = row[i - 3] if i >= 3 else 0
        up, corner = prev[i], prev[i - 3] if i >= 3 else 0
        predictor = {1: left, 2: up, 3: (left + up) // 2, 4: images._paeth(left, up, corner)}
        out.append((value - predictor[kind]) & 0xFF)
    return bytes(out)


def test_corrupt_data_is_unidentified() -> None:
    with pytest.raises(images.UnidentifiedImageError):
        images.decode(b"not a png at all")
    with pytest.raises(images.UnidentifiedImageError):
        images.decode(images.PNG_SIGNATURE + b"\x00\x00\x00\x0dIHDR" + bytes(13))


def test_operations_keep_requested_sizes() -> None:
    base = images.solid(256, 128, 0x00FF00)
    assert images.invert(base).rgb[:3] == bytes([255, 0, 255])
    scaled = images.scale(base, 512, 256)
    assert (scaled.width, scaled.height, len(scaled.rgb)) == (512, 256, 512 * 256 * 3)
    assert images.scale(base, 0, 64).width == 128
    dest, src = images.solid(8, 8, 0xFFFFFF), images.solid(4, 4, 0x0000FF)
    out = images.composite(dest, src, 2, 2, images.solid_mask(4, 4, 1.0))
    assert out.row(3)[6:9] == bytes([0, 0, 255])
    assert out.row(0)[:3] == bytes([255] * 3)
    half = images.composite(dest, src, 6, 6, images.solid_mask(4, 4, 0.0))
    assert half == dest
