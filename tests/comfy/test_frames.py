"""Pure parsing: every recorded WS frame, binary frame layouts, history outcomes, queue
order, backoff. No I/O."""

from __future__ import annotations

import struct

import orjson
import pytest

from comfyfleet.comfy import ComfyProtocolError, HistoryEntry, QueueState, outcome_from_history
from comfyfleet.comfy import events as ev
from comfyfleet.comfy.frames import parse_binary, parse_text
from comfyfleet.comfy.socket import backoff_delay
from tests.support.replay import frame
from tests.support.traces import TRACES, binary_payload, load, ws_messages

WS_TRACES = sorted(
    str(p.relative_to(TRACES))
    for p in TRACES.rglob("*.json")
    if "messages" in orjson.loads(p.read_bytes())
)
HISTORY_TRACES = sorted(
    str(p.relative_to(TRACES))
    for p in TRACES.rglob("*.json")
    if (d := orjson.loads(p.read_bytes()))
    .get("request", {})
    .get("path", "")
    .startswith("/history/")
    and d["body"]
)


def parse(raw: str | bytes) -> ev.Event:
    return parse_text(raw) if isinstance(raw, str) else parse_binary(raw)


def test_there_are_ws_traces() -> None:
    assert len(WS_TRACES) == 27


@pytest.mark.parametrize("relative", WS_TRACES)
def test_every_recorded_frame_parses(relative: str) -> None:
    for message in ws_messages(relative):
        raw = frame(message)
        if raw is None:
            continue
        event = parse(raw)
        assert not isinstance(event, ev.UnknownMessage | ev.UnknownBinary), event
        if message["kind"] == "text":
            assert event.kind == message["json"]["type"]
            assert event.prompt_id == (message["json"]["data"] or {}).get("prompt_id")


@pytest.mark.parametrize(
    ("variant", "event_type"),
    [("no_feature_flags", 1), ("feature_flags_empty", 1), ("feature_flags_preview_metadata", 4)],
)
def test_preview_frames_decode_to_saved_images(variant: str, event_type: int) -> None:
    relative = f"12_ws/SaveImageWebsocket_{variant}_ws_messages.json"
    payload_prefix = f"binary_{variant}"
    binaries = [m for m in ws_messages(relative) if m["kind"] == "binary"]
    previews = [parse_binary(frame(m)) for m in binaries]  # type: ignore[arg-type]
    assert len(previews) == 2
    for n, preview in enumerate(previews, 1):
        assert isinstance(preview, ev.PreviewImage)
        assert preview.event_type == event_type
        assert preview.image_format == "png"
        assert preview.image == binary_payload(f"{payload_prefix}_frame{n}.png")
        if event_type == 4:
            assert preview.prompt_id == "5a2d7b46-936a-4e36-8da0-680038c74a33"
            assert preview.node_id == "2"
        else:
            assert preview.prompt_id is None  # the router attributes it


def test_text_frame_decodes() -> None:
    relative = "12_ws/GetImageSize_text_frames_ws_messages.json"
    (message,) = [m for m in ws_messages(relative) if m["kind"] == "binary"]
    event = parse_binary(frame(message))  # type: ignore[arg-type]
    assert event == ev.TextFrame(node_id="2", text="width: 320, height: 200\n batch size: 3")


def test_jpeg_and_unknown_binary_types() -> None:
    jpeg = parse_binary(struct.pack(">II", 1, 1) + b"\xff\xd8jpeg")
    assert isinstance(jpeg, ev.PreviewImage)
    assert jpeg.image_format == "jpeg"
    assert jpeg.image == b"\xff\xd8jpeg"
    other = parse_binary(struct.pack(">I", 9) + b"xyz")
    assert other == ev.UnknownBinary(event_type=9, payload=b"xyz")


@pytest.mark.parametrize(
    "raw",
    [b"\x00\x00", struct.pack(">I", 1) + b"\x00", struct.pack(">II", 3, 10) + b"2",
     struct.pack(">II", 4, 50) + b"{}", struct.pack(">II", 4, 2) + b"[]"],
)  # fmt: skip
def test_truncated_binary_frames_are_protocol_errors(raw: bytes) -> None:
    with pytest.raises(ComfyProtocolError):
        parse_binary(raw)


@pytest.mark.parametrize(
    "raw",
    ["{not json", "[1,2]", '{"data": {}}', '{"type": "executed", "data": {"output": {}}}'],
)
def test_malformed_text_frames_are_protocol_errors(raw: str) -> None:
    with pytest.raises(ComfyProtocolError):
        parse_text(raw)


def test_unknown_text_types_are_kept_not_fatal() -> None:
    event = parse_text('{"type": "crystools.monitor", "data": {"cpu": 3}}')
    assert event == ev.UnknownMessage(type="crystools.monitor", data={"cpu": 3})


def test_reconnect_executing_has_no_prompt_id() -> None:
    relative = "12_ws/reconnect_same_clientId_second_socket.json"
    event = parse(frame(ws_messages(relative)[1]))  # type: ignore[arg-type]
    assert event == ev.Executing(node="2")
    assert event.prompt_id is None


EXPECTED_HISTORY_KIND = {
    "08_execution_error/history_prompt_id.json": "error",
    "08_execution_error/two_outputs_one_fails_history.json": "error",
    "09_interrupt/history_prompt_id.json": "interrupted",
    "09_interrupt/targeted_history.json": "interrupted",
}


@pytest.mark.parametrize("relative", HISTORY_TRACES)
def test_every_history_entry_gives_an_outcome(relative: str) -> None:
    body = load(relative)["body"]
    (prompt_id,) = body
    outcome = outcome_from_history(HistoryEntry.from_wire(prompt_id, body[prompt_id]))
    assert outcome.kind == EXPECTED_HISTORY_KIND.get(relative, "success")
    assert outcome.prompt_id == prompt_id
    assert outcome.source == "history"
    if outcome.kind != "rejected" and hasattr(outcome, "outputs"):
        assert set(outcome.outputs) == set(body[prompt_id]["outputs"])


def test_history_outcome_details() -> None:
    body = load("08_execution_error/two_outputs_one_fails_history.json")["body"]
    (pid,) = body
    failed = outcome_from_history(HistoryEntry.from_wire(pid, body[pid]))
    assert failed.kind == "error"
    assert (failed.node_id, failed.node_type) == ("1", "LoadImage")
    assert failed.exception_type == "PIL.UnidentifiedImageError"
    assert [i.filename for i in failed.images()] == ["peer_f2_ok_00001_.png"]  # kept
    body = load("06_cached_resubmit/second_history.json")["body"]
    (pid,) = body
    cached = outcome_from_history(HistoryEntry.from_wire(pid, body[pid]))
    assert cached.kind == "success"
    assert cached.cached
    body = load("04_success_a/history_prompt_id.json")["body"]
    (pid,) = body
    fresh = outcome_from_history(HistoryEntry.from_wire(pid, body[pid]))
    assert fresh.kind == "success"
    assert not fresh.cached


def test_queue_pending_is_sorted_by_number() -> None:
    body = load("10_queue/queue_busy.json")["body"]
    queue = QueueState.from_wire(body)
    assert [i.number for i in queue.pending] == [-40, 0.5, 38, 39, 41]
    assert queue.is_running("445bdd57-e590-4e46-b30c-5dabcd8ccdc9")
    assert queue.is_pending("my-own-prompt-id-123")
    assert not queue.contains("nope")
    heap_order = [[n, f"p{n}", {}, {}, []] for n in (-67, -65, 66, 64, 68)]
    sorted_queue = QueueState.from_wire({"queue_running": [], "queue_pending": heap_order})
    assert [i.number for i in sorted_queue.pending] == [-67, -65, 64, 66, 68]


def test_backoff_doubles_caps_and_jitters() -> None:
    delays = [backoff_delay(n, initial_s=0.1, max_s=1.0, jitter=0.5, rand=0.0) for n in range(6)]
    assert delays == [0.1, 0.2, 0.4, 0.8, 1.0, 1.0]
    assert backoff_delay(3, initial_s=0.1, max_s=1.0, jitter=0.5, rand=0.99) == pytest.approx(
        0.8 * (1 - 0.495)
    )
    assert backoff_delay(10_000, initial_s=0.1, max_s=2.0, jitter=0.0, rand=0.5) == 2.0
