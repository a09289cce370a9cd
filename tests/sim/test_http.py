"""The plain HTTP endpoints (01_get, 02_api_alias, 03_upload, 04 /view, 14_misc)."""

from __future__ import annotations

import pytest

from tests.sim.conftest import Sim, small_png
from tests.sim.shapes import shape
from tests.support.traces import load, workflow

EXACT_GETS = [
    "01_get/features.json",
    "01_get/history_empty.json",
    "01_get/object_info_EmptyImage.json",
    "01_get/object_info_SaveImage.json",
    "01_get/object_info_unknown_node.json",
    "01_get/prompt_get_idle.json",
    "01_get/queue_idle.json",
    "01_get/embeddings.json",
    "01_get/models_list.json",
    "01_get/models_unknown_folder.json",
    "02_api_alias/api_features.json",
    "02_api_alias/api_history.json",
    "02_api_alias/api_object_info_EmptyImage.json",
    "02_api_alias/api_prompt_get.json",
    "02_api_alias/api_queue.json",
    "02_api_alias/api_internal_logs.json",
    "02_api_alias/api_nonexistent.json",
]


@pytest.mark.parametrize("trace", EXACT_GETS)
async def test_get_matches_recording_exactly(sim: Sim, trace: str) -> None:
    recorded = load(trace)
    status, body, headers = await sim.request("GET", recorded["request"]["path"])
    assert status == recorded["status"]
    assert body == recorded.get("body")
    if recorded.get("body") is not None:
        assert headers["Content-Type"] == "application/json; charset=utf-8"


@pytest.mark.parametrize("path", ["/system_stats", "/api/system_stats"])
async def test_system_stats_shape(sim: Sim, path: str) -> None:
    status, body, _ = await sim.request("GET", path)
    recorded = load("01_get/system_stats.json")["body"]
    assert status == 200
    assert shape({**body, "system": {**body["system"], "argv": []}}) == shape(
        {**recorded, "system": {**recorded["system"], "argv": []}}
    )
    assert body["devices"][0]["name"] == "cpu"
    assert body["devices"][0]["index"] is None


async def test_object_info_lists_every_workflow_node(sim: Sim) -> None:
    summary = load("01_get/object_info_summary.json")["body_summary"]
    _, info, _ = await sim.request("GET", "/object_info")
    for name in ("ImageBlur", "SaveImageWebsocket", "EmptyImage", "SaveImage", "LoadImage"):
        assert info[name] == summary[name], name
    used = {n["class_type"] for w in _all_workflows() for n in w.values()} - {"NoSuchNodeClass"}
    assert used <= set(info) <= set(summary["all_node_names"])


def _all_workflows() -> list[dict[str, dict[str, str]]]:
    from tests.support.traces import WORKFLOWS

    return [workflow(p.stem) for p in sorted(WORKFLOWS.glob("*.json"))]


async def test_models_folders(sim: Sim) -> None:
    assert (await sim.request("GET", "/models/checkpoints"))[1] == [
        "v1-5-pruned-emaonly.safetensors"
    ]
    assert (await sim.request("GET", "/models/loras"))[1] == []


async def test_api_post_prompt(sim: Sim) -> None:
    recorded = load("02_api_alias/api_post_prompt.json")
    status, body, _ = await sim.request("POST", "/api/prompt", json=recorded["request"]["json"])
    assert status == 200
    assert shape(body) == shape(recorded["body"])


async def test_upload_sequence(sim: Sim) -> None:
    first, other = small_png(), small_png(color=0x112233)
    steps = [
        ("upload_new", "peer_input.png", first, {}),
        ("upload_same_name_same_content", "peer_input.png", first, {}),
        ("upload_same_name_other_content", "peer_input.png", other, {}),
        ("upload_overwrite_true", "peer_input.png", first, {"overwrite": "true"}),
        (
            "upload_subfolder_type_input",
            "peer_sub_img.png",
            other,
            {"subfolder": "peer_sub", "type": "input"},
        ),
        ("upload_type_temp", "peer_temp.png", other, {"type": "temp"}),
        ("upload_corrupt_not_an_image", "peer_corrupt.png", b"not an image", {}),
    ]
    for trace, name, data, fields in steps:
        status, body = await sim.upload(name, data, **fields)
        assert (status, body) == (200, load(f"03_upload/{trace}.json")["body"]), trace
    status, body, _ = await sim.request("GET", "/object_info/LoadImage")
    assert body == load("03_upload/object_info_LoadImage_after_uploads.json")["body"]
    form_status, form_body, _ = await sim.request("POST", "/upload/image", data={"subfolder": ""})
    assert (form_status, form_body) == (400, None)


async def test_view_headers_and_errors(sim: Sim) -> None:
    await sim.upload("peer_input.png", small_png())
    recorded = load("03_upload/view_uploaded_input.json")
    status, body, headers = await sim.request("GET", recorded["request"]["path"])
    assert status == 200
    assert body == small_png()
    for name in ("Content-Disposition", "Content-Type", "Accept-Ranges"):
        assert headers[name] == dict(recorded["headers"])[name]
    assert headers["Content-Length"] == str(len(small_png()))
    assert "Etag" in headers
    assert "Last-Modified" in headers
    for trace in ("view_bad_type", "view_dotdot_400", "view_missing_404"):
        rec = load(f"04_success_a/{trace}.json")
        path = rec["request"]["path"].replace("peer_a_00001_.png", "peer_input.png")
        status, body, _ = await sim.request("GET", path)
        assert (status, body) == (rec["status"], None), trace
    status, body, _ = await sim.request(
        "GET", "/view?filename=peer_input.png&type=input&preview=webp;50"
    )
    assert status == 200
    assert body == small_png()


async def test_origin_check(sim: Sim) -> None:
    prompt = workflow("a_empty_save")
    status, body, _ = await sim.request(
        "POST", "/prompt", json={"prompt": prompt}, headers={"Origin": "http://evil.example"}
    )
    assert (status, body) == (403, None)
    port = sim.base.rsplit(":", 1)[1]
    status, body, _ = await sim.request(
        "POST", "/prompt", json={"prompt": prompt}, headers={"Origin": f"http://127.0.0.1:{port}"}
    )
    assert status == 200


async def test_history_delete_clear_and_max_items(sim: Sim) -> None:
    ids = []
    for color in (1, 2, 3):
        prompt = workflow("a_empty_save")
        prompt["1"]["inputs"]["color"] = color
        ids.append((await sim.post_prompt(prompt))[1]["prompt_id"])
    for prompt_id in ids:
        await sim.wait_history(prompt_id)
    _, last_two, _ = await sim.request("GET", "/history?max_items=2")
    assert list(last_two) == ids[1:]
    recorded = load("14_misc/history_max_items_2.json")["body"]
    assert [shape(v) for v in last_two.values()] == [shape(v) for v in recorded.values()]
    _, offset, _ = await sim.request("GET", "/history?offset=1&max_items=1")
    assert list(offset) == [ids[1]]
    assert (await sim.request("GET", "/history/unknown-prompt-id"))[1] == {}
    status, body, _ = await sim.request("POST", "/history", json={"delete": [ids[0]]})
    assert (status, body) == (200, None)
    assert await sim.history(ids[0]) == {}
    status, body, _ = await sim.request("POST", "/history", json={"clear": True})
    assert (status, body) == (200, None)
    assert (await sim.request("GET", "/history"))[1] == {}
    assert (await sim.request("POST", "/free", json={}))[:2] == (200, None)
