"""POST /prompt rejections: the exact 400/500 bodies of 07_validation_errors, no WS traffic."""

from __future__ import annotations

import uuid

import pytest

from tests.sim.conftest import Sim
from tests.sim.shapes import assert_same_messages, job_messages, shape
from tests.support.traces import EXACT_REJECTIONS, load, workflow, ws_json_messages

FOLDER = "07_validation_errors"


@pytest.mark.parametrize("name", EXACT_REJECTIONS)
async def test_rejection_body_is_exactly_comfyuis(sim: Sim, name: str) -> None:
    trace = load(f"{FOLDER}/{name}.json")
    status, body, headers = await sim.request("POST", "/prompt", json=trace["request"]["json"])
    assert status == trace["status"] == 400
    assert headers["Content-Type"] == "application/json; charset=utf-8"
    assert body == trace["body"]


async def test_link_to_missing_node_is_an_exception_during_validation(sim: Sim) -> None:
    trace = load(f"{FOLDER}/link_to_missing_node_id.json")
    status, body, _ = await sim.request("POST", "/prompt", json=trace["request"]["json"])
    assert status == 400
    assert shape(body) == shape(trace["body"])
    assert body["error"] == trace["body"]["error"]
    error = body["node_errors"]["2"]["errors"][0]
    assert error["extra_info"]["exception_type"] == "KeyError"


@pytest.mark.parametrize("name", ["body_not_json", "prompt_is_a_list"])
async def test_unusable_body_is_a_plain_text_500(sim: Sim, name: str) -> None:
    trace = load(f"{FOLDER}/{name}.json")
    request = trace["request"]
    if "raw_body" in request:
        kw = {"data": request["raw_body"], "headers": request["headers"]}
    else:
        kw = {"json": request["json"]}
    async with sim.session.post(sim.base + "/prompt", **kw) as resp:
        text = await resp.text()
        assert resp.status == 500
        assert resp.headers["Content-Type"] == "text/plain; charset=utf-8"
        assert int(resp.headers["Content-Length"]) == trace["body_len"] == len(text)


async def test_rejected_posts_send_no_websocket_message_but_use_numbers(sim: Sim) -> None:
    client_id = uuid.uuid4().hex
    sock = await sim.ws(client_id)
    for name in EXACT_REJECTIONS:
        payload = load(f"{FOLDER}/{name}.json")["request"]["json"]
        await sim.request("POST", "/prompt", json={**payload, "client_id": client_id})
    await sim.request("POST", "/prompt", json={"prompt": [1, 2, 3]})
    status, body = await sim.post_prompt(workflow("a_empty_save"), client_id=client_id)
    # body_without_prompt_key and the list prompt also took numbers.
    assert (status, body["number"]) == (200, len(EXACT_REJECTIONS) + 1)
    await sock.until_done(body["prompt_id"])
    # Nothing between the connect status and this job's enqueue status.
    assert [m["type"] for m in sock.messages[:3]] == ["status", "status", "status"]
    assert sock.messages[1]["data"]["status"]["exec_info"]["queue_remaining"] == 1


async def test_partially_valid_prompt_runs_its_good_output(sim: Sim) -> None:
    client_id = uuid.uuid4().hex
    sock = await sim.ws(client_id)
    trace = load(f"{FOLDER}/e7_partially_valid_one_bad_output.json")
    status, body = await sim.post_prompt(trace["request"]["json"]["prompt"], client_id=client_id)
    assert status == 200
    assert body["node_errors"] == trace["body"]["node_errors"]
    await sock.until_done(body["prompt_id"])
    recorded = ws_json_messages(f"{FOLDER}/ws_messages_during_all_of_the_above.json")
    recorded_id = trace["body"]["prompt_id"]
    assert_same_messages(recorded, sock.messages)
    assert_same_messages(
        job_messages(recorded, recorded_id), job_messages(sock.messages, body["prompt_id"])
    )
    entry = await sim.wait_history(body["prompt_id"])
    history = load(f"{FOLDER}/e7_history.json")["body"][recorded_id]
    assert shape(entry) == shape(history)
    assert entry["prompt"][4] == ["2"]


async def test_values_are_converted_in_place_like_comfyui(sim: Sim) -> None:
    prompt = workflow("a_empty_save")
    prompt["1"]["inputs"]["width"] = "64"
    prompt["1"]["inputs"]["height"] = 32.9
    status, body = await sim.post_prompt(prompt)
    assert status == 200
    entry = await sim.wait_history(body["prompt_id"])
    assert entry["prompt"][2]["1"]["inputs"]["width"] == 64
    assert entry["prompt"][2]["1"]["inputs"]["height"] == 32


async def test_combo_value_not_in_list(sim: Sim) -> None:
    prompt = workflow("d_two_outputs")
    prompt["4"]["inputs"]["upscale_method"] = "sideways"
    status, body = await sim.post_prompt(prompt)
    assert status == 200  # output 2 is still valid
    (error,) = body["node_errors"]["4"]["errors"]
    assert error["type"] == "value_not_in_list"
    assert error["details"] == (
        "upscale_method: 'sideways' not in "
        "['nearest-exact', 'bilinear', 'area', 'bicubic', 'lanczos']"
    )
    assert body["node_errors"]["4"]["dependent_outputs"] == ["5"]
