"""The successful shared workflows, message for message against the recordings."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import pytest

from tests.sim.conftest import Sim, small_png
from tests.sim.pngcheck import png_file_size
from tests.sim.shapes import assert_same_messages, shape
from tests.support.traces import load, workflow, ws_json_messages

# workflow -> (trace folder, {output node: [(width, height), ...]})
SUCCESS = {
    "a_empty_save": ("04_success_a", {"2": [(512, 512)]}),
    "b_blur_large": ("05_workflows/b_blur_large", {"3": [(2048, 2048)]}),
    "c_load_invert_save": ("05_workflows/c_load_invert_save", {"3": [(8, 6)]}),
    "d_two_outputs": (
        "05_workflows/d_two_outputs",
        {"2": [(256, 128), (256, 128)], "5": [(512, 256), (512, 256)]},
    ),
    "g_preview_image_temp": ("05_workflows/g_preview_image_temp", {"3": [(128, 128)]}),
    "j_mask_composite": ("05_workflows/j_mask_composite", {"5": [(256, 256)]}),
}


async def run_job(sim: Sim, prompt: dict[str, Any], **extra: Any) -> tuple[Any, list[Any]]:
    """Connect as a fresh client, submit, wait for the finish signal; (body, messages)."""
    client_id = uuid.uuid4().hex
    sock = await sim.ws(client_id)
    status, body = await sim.post_prompt(prompt, client_id=client_id, **extra)
    assert status == 200, body
    await sock.until_done(body["prompt_id"])
    return body, sock.messages


def image_path(sim: Sim, image: dict[str, str]) -> Path:
    root = Path(sim.state.storage.root)
    return root / image["type"] / image["subfolder"] / image["filename"]


@pytest.mark.parametrize("name", sorted(SUCCESS))
async def test_success_workflow_matches_recording(sim: Sim, name: str) -> None:
    folder, sizes = SUCCESS[name]
    if name.startswith("c_"):
        assert (await sim.upload("peer_input.png", small_png()))[0] == 200
    body, messages = await run_job(sim, workflow(name))

    recorded_post = load(f"{folder}/post_prompt_response.json")
    assert shape(body) == shape(recorded_post["body"])
    assert_same_messages(ws_json_messages(f"{folder}/ws_messages.json"), messages)

    entry = await sim.wait_history(body["prompt_id"])
    recorded = load(f"{folder}/history_prompt_id.json")["body"]
    assert shape(entry) == shape(next(iter(recorded.values())))
    assert entry["prompt"][4] == next(iter(recorded.values()))["prompt"][4]
    for node_id, expected in sizes.items():
        images = entry["outputs"][node_id]["images"]
        assert [png_file_size(image_path(sim, image)) for image in images] == expected


async def test_output_counter_continues_and_subfolder_comes_from_prefix(sim: Sim) -> None:
    prompt = workflow("d_two_outputs")
    first, _ = await run_job(sim, prompt)
    prompt["1"]["inputs"]["color"] = 123  # a changed input defeats the cache
    second, _ = await run_job(sim, prompt)
    names = []
    for body in (first, second):
        entry = await sim.wait_history(body["prompt_id"])
        names.append([i["filename"] for i in entry["outputs"]["5"]["images"]])
        assert {i["subfolder"] for i in entry["outputs"]["5"]["images"]} == {"peer_d"}
    assert names == [
        ["inverted_00001_.png", "inverted_00002_.png"],
        ["inverted_00003_.png", "inverted_00004_.png"],
    ]


async def test_preview_image_goes_to_temp_with_random_prefix(sim: Sim) -> None:
    body, _ = await run_job(sim, workflow("g_preview_image_temp"))
    entry = await sim.wait_history(body["prompt_id"])
    (image,) = entry["outputs"]["3"]["images"]
    assert image["type"] == "temp"
    stem = image["filename"].removeprefix("ComfyUI_temp_")
    assert len(stem) == len("abcde_00001_.png")
    assert stem.endswith("_00001_.png")


async def test_cached_resubmit_resends_old_files_and_writes_nothing(sim: Sim) -> None:
    prompt = workflow("a_empty_save")
    first, first_msgs = await run_job(sim, prompt)
    files_before = sorted(p.name for p in (sim.state.storage.root / "output").iterdir())
    second, second_msgs = await run_job(sim, prompt)
    folder = "06_cached_resubmit"
    assert_same_messages(ws_json_messages(f"{folder}/first_run_ws_messages.json"), first_msgs)
    # The recording of the second run starts at the enqueue status (same socket as run 1).
    assert_same_messages(
        ws_json_messages(f"{folder}/second_identical_run_ws_messages.json"), second_msgs[1:]
    )
    assert sorted(p.name for p in (sim.state.storage.root / "output").iterdir()) == files_before
    old, new = (
        await sim.wait_history(first["prompt_id"]),
        await sim.wait_history(second["prompt_id"]),
    )
    assert new["outputs"] == old["outputs"]
    recorded = load(f"{folder}/second_history.json")["body"]
    assert shape(new) == shape(next(iter(recorded.values())))
    cached = new["status"]["messages"][1][1]["nodes"]
    assert cached == ["1", "2"]


async def test_free_memory_clears_the_cache(sim: Sim) -> None:
    prompt = workflow("a_empty_save")
    await run_job(sim, prompt)
    status, body, _ = await sim.request(
        "POST", "/free", json={"unload_models": True, "free_memory": True}
    )
    assert (status, body) == (200, None)
    await sim.wait_for(lambda: not sim.state.executor.cache)
    again, _ = await run_job(sim, prompt)
    entry = await sim.wait_history(again["prompt_id"])
    assert entry["status"]["messages"][1][1]["nodes"] == []
    assert entry["outputs"]["2"]["images"][0]["filename"] == "peer_a_00002_.png"


async def test_extra_data_in_history_and_png_text_chunks(sim: Sim) -> None:
    from tests.sim.pngcheck import text_chunks

    recorded_post = load("14_misc/extra_data_post.json")["request"]["json"]
    extra = recorded_post["extra_data"]
    body, _ = await run_job(sim, workflow("a_empty_save"), extra_data=dict(extra))
    entry = await sim.wait_history(body["prompt_id"])
    stored = entry["prompt"][3]
    assert "api_key_comfy_org" not in stored
    assert stored["my_key"] == 1
    assert "client_id" in stored
    assert list(stored) == list(
        load("14_misc/extra_data_history.json")["body"].popitem()[1]["prompt"][3]
    )
    image = entry["outputs"]["2"]["images"][0]
    text = text_chunks(image_path(sim, image).read_bytes())
    recorded = load("14_misc/extra_data_png_text_chunks.json")["text"]
    assert set(text) == set(recorded)
    assert text["workflow"] == recorded["workflow"]
