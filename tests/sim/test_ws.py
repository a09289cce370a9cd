"""WebSocket behaviour: routing per client (11), connect/reconnect, feature flags and binary
frames (12), log subscriptions (13)."""

from __future__ import annotations

import json
import re
import struct
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from comfyfleet.config import SimConfig
from tests.sim.conftest import Sim, start_sim
from tests.sim.pngcheck import check_png
from tests.sim.shapes import assert_same_messages, job_messages, shape
from tests.support.traces import load, workflow, ws_json_messages, ws_messages


def frame_signature(frame: dict[str, Any] | bytes) -> Any:
    """JSON frames by shape; binary frames by event type, image format or metadata keys."""
    if isinstance(frame, dict):
        return shape(frame)
    (event,) = struct.unpack(">I", frame[:4])
    if event == 1:
        return ("bin", 1, struct.unpack(">I", frame[4:8])[0], check_png(frame[8:]))
    if event == 4:
        (length,) = struct.unpack(">I", frame[4:8])
        meta = json.loads(frame[8 : 8 + length])
        return ("bin", 4, sorted(meta), meta["image_type"], check_png(frame[8 + length :]))
    (length,) = struct.unpack(">I", frame[4:8])
    return ("bin", 3, frame[8 : 8 + length].decode(), frame[8 + length :].decode())


def recorded_signature(message: dict[str, Any]) -> Any:
    if message["kind"] == "text":
        return shape(message["json"])
    if message["event_type"] == 1:
        return ("bin", 1, message["image_type_code"], tuple(message["image_size"]))
    if message["event_type"] == 4:
        meta = message["metadata"]
        return ("bin", 4, sorted(meta), meta["image_type"], tuple(message["image_size"]))
    return ("bin", 3, message["node_id"], message["text"])


def recorded_frames(relative: str) -> list[Any]:
    return [
        recorded_signature(m)
        for m in ws_messages(relative)
        if m["kind"] != "closed_by_server_or_client"
    ]


async def test_connect_without_client_id_gets_a_hex_sid(sim: Sim) -> None:
    sock = await sim.ws()
    recorded = ws_json_messages("12_ws/connect_without_clientId.json")
    assert_same_messages(recorded, sock.messages)
    assert re.fullmatch(r"[0-9a-f]{32}", sock.messages[0]["data"]["sid"])


@pytest.mark.parametrize(
    ("flags", "trace"),
    [
        (None, "SaveImageWebsocket_no_feature_flags"),
        ({}, "SaveImageWebsocket_feature_flags_empty"),
        ({"supports_preview_metadata": True}, "SaveImageWebsocket_feature_flags_preview_metadata"),
    ],
)
async def test_save_image_websocket_frames(sim: Sim, flags: Any, trace: str) -> None:
    client_id = uuid.uuid4().hex
    sock = await sim.ws(client_id, flags=flags)
    _status, body = await sim.post_prompt(workflow("h_ws_binary_image"), client_id=client_id)
    await sock.until_done(body["prompt_id"])
    expected = recorded_frames(f"12_ws/{trace}_ws_messages.json")
    if flags is not None:  # the recording shows the client's own flags message first
        expected = expected[1:]
    assert [frame_signature(f) for f in sock.frames] == expected
    entry = await sim.wait_history(body["prompt_id"])
    recorded = load(f"12_ws/{trace}_history.json")["body"]
    assert shape(entry) == shape(next(iter(recorded.values())))
    assert entry["outputs"] == {}


async def test_get_image_size_sends_a_text_frame(sim: Sim) -> None:
    client_id = uuid.uuid4().hex
    sock = await sim.ws(client_id)
    _status, body = await sim.post_prompt(
        workflow("i_text_frames_get_image_size"), client_id=client_id
    )
    await sock.until_done(body["prompt_id"])
    expected = recorded_frames("12_ws/GetImageSize_text_frames_ws_messages.json")
    assert [frame_signature(f) for f in sock.frames] == expected
    entry = await sim.wait_history(body["prompt_id"])
    assert entry["outputs"] == {"3": {"text": ["320"]}}


async def test_each_client_gets_only_its_own_job_messages(sim: Sim) -> None:
    x, y = uuid.uuid4().hex, uuid.uuid4().hex
    sock_x, sock_y = await sim.ws(x), await sim.ws(y)
    _, post_x = await sim.post_prompt(workflow("b_blur_large"), client_id=x)
    _, post_y = await sim.post_prompt(workflow("d_two_outputs"), client_id=y)
    assert post_y["number"] == post_x["number"] + 1
    await sock_x.until_done(post_x["prompt_id"])
    await sock_y.until_done(post_y["prompt_id"])
    for sock, mine, other, trace, post in (
        (sock_x, post_x, post_y, "ws_X", "post_X"),
        (sock_y, post_y, post_x, "ws_Y", "post_Y"),
    ):
        recorded = ws_json_messages(f"11_two_clients/{trace}.json")
        recorded_id = load(f"11_two_clients/{post}.json")["body"]["prompt_id"]
        assert_same_messages(
            job_messages(recorded, recorded_id), job_messages(sock.messages, mine["prompt_id"])
        )
        assert job_messages(sock.messages, other["prompt_id"]) == []
    assert sock_x.messages[-1]["type"] in ("status", "executing")


async def test_job_without_client_id_broadcasts_progress_state_only(sim: Sim) -> None:
    observer = await sim.ws(uuid.uuid4().hex)
    _, posted = await sim.post_prompt(workflow("d_two_outputs"))
    await sim.wait_history(posted["prompt_id"])
    await observer.until(
        lambda f: (
            isinstance(f, dict)
            and f["type"] == "status"
            and f["data"]["status"]["exec_info"]["queue_remaining"] == 0
        )
    )
    recorded = ws_json_messages("11_two_clients/job_without_client_id_observer_ws.json")
    assert_same_messages(recorded, observer.messages)


@pytest.fixture
async def slow_sim(tmp_path: Path) -> AsyncIterator[Sim]:
    """Nodes take 300 ms, so a reconnect certainly happens while node 2 runs."""
    runner, base = await start_sim(
        SimConfig(port=0, node_ms=300, step_ms=1, data_dir=str(tmp_path))
    )
    async with aiohttp.ClientSession() as session:
        client = Sim(base, session, runner.app)
        yield client
        for sock in client.sockets:
            await sock.ws.close()
    await runner.cleanup()


async def test_reconnect_replaces_the_socket_and_tells_the_running_node(slow_sim: Sim) -> None:
    sim = slow_sim
    client_id = uuid.uuid4().hex
    first = await sim.ws(client_id)
    _, posted = await sim.post_prompt(workflow("b_blur_large"), client_id=client_id)
    await first.until(
        lambda f: isinstance(f, dict) and f["type"] == "executing" and f["data"]["node"] == "2"
    )
    second = await sim.ws(client_id, first=False)
    await second.until_done(posted["prompt_id"])
    recorded_first = ws_json_messages("12_ws/reconnect_same_clientId_first_socket.json")
    recorded_second = ws_json_messages("12_ws/reconnect_same_clientId_second_socket.json")
    assert_same_messages(recorded_first, first.messages)
    assert_same_messages(recorded_second, second.messages)
    assert second.messages[1] == {"type": "executing", "data": {"node": "2"}}
    assert await first.silent()


async def test_logs_subscription(sim: Sim) -> None:
    client_id = uuid.uuid4().hex
    sock = await sim.ws(client_id)
    status, body, _ = await sim.request(
        "PATCH", "/internal/logs/subscribe", json={"clientId": client_id, "enabled": True}
    )
    assert (status, body) == (200, None)
    _, posted = await sim.post_prompt(workflow("a_empty_save"), client_id=client_id)
    await sock.until_done(posted["prompt_id"])
    await sock.until(lambda f: isinstance(f, dict) and f["type"] == "logs")
    recorded = ws_json_messages("13_logs/ws_messages_while_subscribed.json")
    logs = [m for m in sock.messages if m["type"] == "logs"]
    recorded_logs = [m for m in recorded if m["type"] == "logs"]
    assert [shape(m) for m in logs[:2]] == [shape(m) for m in recorded_logs]
    assert logs[0]["data"]["entries"][0]["m"] == "got prompt\n"
    assert sock.messages[1]["type"] == "logs"  # "got prompt" comes before the status
    status, body, _ = await sim.request(
        "PATCH", "/internal/logs/subscribe", json={"clientId": client_id, "enabled": False}
    )
    assert (status, body) == (200, None)
    assert client_id not in sim.state.hub.log_subscribers
    status, _, headers = await sim.request(
        "PATCH", "/api/internal/logs/subscribe", json={"clientId": client_id, "enabled": False}
    )
    assert status == 405
    assert headers["Allow"] == "GET,HEAD"


async def test_internal_logs_bodies(sim: Sim) -> None:
    status, text, _ = await sim.request("GET", "/internal/logs")
    assert status == 200
    assert isinstance(text, str)
    assert " - " in text
    status, raw, _ = await sim.request("GET", "/internal/logs/raw")
    recorded = load("13_logs/internal_logs_raw_after_jobs.json")["body"]
    assert shape(raw)["size"] == shape(recorded)["size"]
    assert shape(raw["entries"][0]) == shape(recorded["entries"][0])
