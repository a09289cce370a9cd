"""The names ComfyUI clients give their uploads (store/input_names.py): per owner, the last
upload under a name wins, and names are forgotten as they age and beyond a bound, oldest
first, so new names for the same bytes cannot grow Redis without end."""

from __future__ import annotations

import pytest

from comfyfleet.errors import BadRequest
from comfyfleet.store.input_names import InputNames, client_path, looked_up, split_annotation
from comfyfleet.store.jobs import JobStore
from tests.support.clock import SteppedClock

CFIN = "cfin_" + "a" * 32 + ".png"
OTHER = "cfin_" + "b" * 32 + ".png"


async def test_names_are_per_owner_and_the_last_upload_wins(store: JobStore) -> None:
    names = InputNames(store.redis, store.keys)
    await names.remember("alice", "clipspace/x.png", CFIN)
    await names.remember("alice", "clipspace/x.png", OTHER)
    await names.remember("bob", "photo.png", CFIN)
    assert await names.resolve("alice", ["clipspace/x.png", "photo.png"]) == {
        "clipspace/x.png": OTHER
    }
    assert await names.resolve("bob", ["photo.png", "clipspace/x.png"]) == {"photo.png": CFIN}
    assert await names.resolve("carol", []) == {}


async def test_old_names_and_the_oldest_beyond_the_bound_are_forgotten(
    store: JobStore, clock: SteppedClock
) -> None:
    names = InputNames(store.redis, store.keys, ttl_ms=1_000, max_names=3)
    await names.remember("alice", "old.png", CFIN)
    await clock.step(1_000)  # old.png is now as old as the TTL
    for n in range(4):
        await names.remember("alice", f"n{n}.png", CFIN)
        await clock.step(1)
    kept = await names.resolve("alice", ["old.png", "n0.png", "n1.png", "n2.png", "n3.png"])
    assert set(kept) == {"n1.png", "n2.png", "n3.png"}
    assert await store.redis.zcard(store.keys.input_name_times("alice")) == 3
    assert 0 < await store.redis.pttl(store.keys.input_names("alice")) <= 1_000


def test_client_names_as_comfyui_keeps_them() -> None:
    assert client_path("clipspace", "clipspace-mask-1.png") == "clipspace/clipspace-mask-1.png"
    assert client_path("/clipspace/", "dir/x.png") == "clipspace/x.png"  # base name only
    assert client_path("", "photo.png") == "photo.png"
    assert client_path("", None) is None
    for subfolder in ("../../etc", "/abs/../x", "C:"):
        with pytest.raises(BadRequest) as caught:
            client_path(subfolder, "x.png")
        assert caught.value.extra["field"] == "subfolder"
    with pytest.raises(BadRequest):
        client_path("", "x" * 300 + ".png")
    assert split_annotation("clipspace/x.png [input]") == ("clipspace/x.png", "input")
    assert split_annotation("x.png [output]") == ("x.png", "output")
    assert split_annotation("x.png") == ("x.png", "input")
    assert looked_up("clipspace/x.png [input]") == "clipspace/x.png"
    assert looked_up("PHOTO.JPG") == "PHOTO.JPG"
    assert looked_up(CFIN) is None  # the fleet's own name
    assert looked_up("x.png [output]") is None
    assert looked_up("sd_xl_base_1.0.safetensors") is None
    assert looked_up("a cat on a mat") is None
