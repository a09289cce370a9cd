"""Execution errors (08_execution_error), against the recordings."""

from __future__ import annotations

import uuid

from tests.sim.conftest import Sim
from tests.sim.shapes import assert_same_messages, shape
from tests.support.traces import load, workflow, ws_json_messages

CORRUPT = b"this is not an image, just 72 bytes of text pretending to be a png file!"


async def test_corrupt_upload_fails_at_load_image(sim: Sim) -> None:
    assert (await sim.upload("peer_corrupt.png", CORRUPT))[0] == 200
    client_id = uuid.uuid4().hex
    sock = await sim.ws(client_id)
    status, body = await sim.post_prompt(
        workflow("f_exec_error_corrupt_image"), client_id=client_id
    )
    assert status == 200
    assert body["node_errors"] == {}
    await sock.until_done(body["prompt_id"])
    assert_same_messages(ws_json_messages("08_execution_error/ws_messages.json"), sock.messages)
    error = next(m for m in sock.messages if m["type"] == "execution_error")["data"]
    assert error["exception_type"] == "PIL.UnidentifiedImageError"
    assert error["exception_message"].startswith("cannot identify image file '")
    assert error["current_inputs"] == {"image": ["peer_corrupt.png"]}
    assert sorted(error["current_outputs"]) == ["1", "2", "3"]
    entry = await sim.wait_history(body["prompt_id"])
    recorded = load("08_execution_error/history_prompt_id.json")["body"]
    assert shape(entry) == shape(next(iter(recorded.values())))
    assert entry["status"]["status_str"] == "error"
    assert not entry["status"]["completed"]


async def test_two_outputs_one_fails_keeps_the_finished_output(sim: Sim) -> None:
    assert (await sim.upload("peer_corrupt.png", CORRUPT))[0] == 200
    client_id = uuid.uuid4().hex
    sock = await sim.ws(client_id)
    prompt = load("08_execution_error/two_outputs_one_fails_workflow.json")
    _status, body = await sim.post_prompt(prompt, client_id=client_id)
    await sock.until_done(body["prompt_id"])
    recorded = ws_json_messages("08_execution_error/two_outputs_one_fails_ws_messages.json")
    assert_same_messages(recorded, sock.messages)
    error = next(m for m in sock.messages if m["type"] == "execution_error")["data"]
    assert error["executed"] == ["3", "4"]
    entry = await sim.wait_history(body["prompt_id"])
    history = load("08_execution_error/two_outputs_one_fails_history.json")["body"]
    assert shape(entry) == shape(next(iter(history.values())))
    assert list(entry["outputs"]) == ["4"]
