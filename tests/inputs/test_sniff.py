"""The upload sniffer and the name scheme: pure, no I/O."""

from __future__ import annotations

import struct

import pytest

from comfyfleet.errors import ValidationFailed
from comfyfleet.store.inputs import (
    MAX_SIDE,
    ImageInfo,
    UnsupportedImage,
    input_id_of,
    input_name,
    input_names,
    sniff_image,
)
from tests.inputs.samples import jpeg, png, webp_lossless, webp_vp8x


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (png(24, 16), ImageInfo("image/png", 24, 16)),
        (jpeg(640, 480), ImageInfo("image/jpeg", 640, 480)),
        (webp_vp8x(300, 200), ImageInfo("image/webp", 300, 200)),
        (webp_lossless(33, 17), ImageInfo("image/webp", 33, 17)),
    ],
)
def test_type_and_size_come_from_the_bytes(data: bytes, expected: ImageInfo) -> None:
    assert sniff_image(data) == expected


@pytest.mark.parametrize(
    "data", [b"", b"GIF89a....", b"<svg xmlns='http://www.w3.org/2000/svg'/>", b"%PDF-1.7"]
)
def test_other_content_is_unsupported(data: bytes) -> None:
    with pytest.raises(UnsupportedImage) as refused:
        sniff_image(data)
    assert refused.value.status == 415


@pytest.mark.parametrize(
    "data",
    [png()[:20], b"\xff\xd8\xff\xe0\x00", b"RIFF\x00\x00\x00\x00WEBPVP8X\x00"],
    ids=["png", "jpeg", "webp"],
)
def test_truncated_headers_are_422(data: bytes) -> None:
    with pytest.raises(ValidationFailed):
        sniff_image(data)


def test_pixel_bombs_are_refused() -> None:
    bomb = bytearray(png())
    bomb[16:24] = struct.pack(">II", MAX_SIDE + 1, 10)
    with pytest.raises(ValidationFailed, match="pixels"):
        sniff_image(bytes(bomb))
    with pytest.raises(ValidationFailed, match="pixels"):
        sniff_image(jpeg(MAX_SIDE, MAX_SIDE))


def test_names_find_uploads_in_a_graph_and_nothing_else() -> None:
    info = ImageInfo("image/png", 1, 1)
    name = input_name("ab" * 16, info)
    assert name == f"cfin_{'ab' * 16}.png"
    assert input_id_of(name) == "ab" * 16
    for other in (
        "example.png",
        "cfin_zz.png",
        f"../cfin_{'ab' * 16}.png",
        f"cfin_{'ab' * 16}.gif",
    ):
        assert input_id_of(other) is None
    graph = {
        "1": {"class_type": "LoadImage", "inputs": {"image": name}},
        "2": {"class_type": "LoadImage", "inputs": {"image": "example.png"}},
        "3": {"class_type": "X", "inputs": {"a": name, "b": ["1", 0], "c": 5}},
    }
    assert input_names(graph) == {"ab" * 16: [("1", "image"), ("3", "a")]}
