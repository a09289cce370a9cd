"""`PromptFrames` (pure): a job's event log in, ComfyUI's frames out, in ComfyUI's order."""

from __future__ import annotations

from typing import Any

from comfyfleet.balancer.native.frames import Preview, PromptFrames, Status, fleet_output

PID = "p-1"


def run(events: list[dict[str, Any]]) -> list[Any]:
    frames = PromptFrames(PID, output_subfolder=PID)
    out: list[Any] = []
    for event in events:
        out += frames.feed({"at_ms": 7, **event})
    return out


def kinds(frames: list[Any]) -> list[str]:
    return [
        "status" if isinstance(f, Status) else "preview" if isinstance(f, Preview) else f["type"]
        for f in frames
    ]


def state(status: str, **extra: Any) -> dict[str, Any]:
    return {"type": "state", "status": status, **extra}


def test_a_success_in_comfyuis_order() -> None:
    frames = run([
        state("queued"), state("running"), {"type": "started"}, {"type": "cached", "nodes": []},
        {"type": "executing", "node": "1"}, {"type": "executing", "node": "2"},
        {"type": "executed", "node": "2", "output": {"images": [
            {"filename": "a_00001_.png", "subfolder": "", "type": "output"}]}},
        state("succeeded"),
    ])  # fmt: skip
    assert kinds(frames) == [
        "status", "status", "execution_start", "execution_cached",
        "progress_state", "executing", "progress_state", "progress_state", "executing",
        "executed", "progress_state", "execution_success", "status", "executing",
    ]  # fmt: skip
    executed = frames[9]["data"]
    assert executed["output"]["images"][0]["subfolder"] == PID
    assert frames[-1] == {"type": "executing", "data": {"node": None, "prompt_id": PID}}
    last_state = frames[10]["data"]["nodes"]
    assert {n: s["state"] for n, s in last_state.items()} == {"1": "finished", "2": "finished"}


def test_outputs_without_an_executed_event_are_reported_before_the_end() -> None:
    """A folded log has no `executed` events: the end's outputs give each node's files,
    once, and a node already reported is not reported again."""
    outputs = [
        {"index": 0, "filename": "a_00001_.png", "node_id": "2", "kind": "output"},
        {"index": 1, "filename": "a_00002_.png", "node_id": "2", "kind": "output"},
        {"index": 2, "filename": "p_00001_.png", "node_id": "3", "kind": "temp"},
    ]
    reported = {"type": "executed", "node": "3", "output": {"images": [
        {"filename": "p_00001_.png", "subfolder": "", "type": "temp"}]}}  # fmt: skip
    frames = run([state("queued"), state("running"), {"type": "started"}, reported,
                  state("succeeded", outputs=outputs)])  # fmt: skip
    assert kinds(frames)[-5:] == ["executed", "executed", "execution_success", "status",
                                  "executing"]  # fmt: skip
    rebuilt = frames[-4]["data"]
    assert rebuilt["node"] == "2"
    assert rebuilt["output"] == {"images": [
        {"filename": "a_00001_.png", "subfolder": PID, "type": "output"},
        {"filename": "a_00002_.png", "subfolder": PID, "type": "output"}]}  # fmt: skip


def test_a_retried_attempt_does_not_end_the_prompt() -> None:
    frames = run([
        state("queued"), {"type": "started"}, {"type": "executing", "node": "1"},
        {"type": "comfy_error", "node_id": "1", "exception_message": "OOM"},
        state("queued"), {"type": "started"}, {"type": "executing", "node": "1"},
        state("succeeded"),
    ])  # fmt: skip
    assert kinds(frames).count("execution_start") == 1
    assert "execution_error" not in kinds(frames)
    assert kinds(frames)[-3:] == ["execution_success", "status", "executing"]


def test_a_failure_reports_comfyuis_error_and_no_finished_state() -> None:
    recorded = {"type": "comfy_error", "node_id": "2", "node_type": "SaveImage",
                "exception_message": "boom", "exception_type": "RuntimeError",
                "traceback": ["t"], "current_inputs": {}, "current_outputs": [],
                "executed": ["1"]}  # fmt: skip
    frames = run([state("queued"), {"type": "started"}, {"type": "executing", "node": "2"},
                  recorded, state("failed", error={"code": "execution_error"})])  # fmt: skip
    assert kinds(frames)[-4:] == ["executing", "execution_error", "status", "executing"]
    error = frames[-3]["data"]
    assert (error["node_id"], error["exception_message"], error["executed"]) == ("2", "boom", ["1"])


def test_a_failure_without_comfyuis_details_names_the_fleets_error() -> None:
    frames = run([state("queued"), state("failed", error={"code": "input_missing",
                                                         "message": "gone"})])  # fmt: skip
    assert kinds(frames) == ["status", "status", "execution_start", "execution_error", "status",
                             "executing"]  # fmt: skip
    assert frames[3]["data"]["exception_type"] == "comfyfleet.input_missing"


def test_a_deleted_pending_prompt_only_changes_the_queue() -> None:
    assert kinds(run([state("queued"), state("cancelled")])) == ["status", "status"]


def test_an_interrupt_ends_with_execution_interrupted() -> None:
    frames = run([state("queued"), {"type": "started"}, {"type": "executing", "node": "3"},
                  {"type": "preview", "n": 1, "content_type": "image/png"},
                  state("cancelled")])  # fmt: skip
    assert kinds(frames)[-5:] == ["executing", "preview", "execution_interrupted", "status",
                                  "executing"]  # fmt: skip
    assert frames[-3]["data"]["node_id"] == "3"


def test_nothing_after_the_end() -> None:
    frames = PromptFrames(PID, output_subfolder=PID)
    frames.feed(state("succeeded"))
    assert frames.feed({"type": "executing", "node": "1"}) == []


def test_fleet_output_moves_files_only() -> None:
    ui = {"images": [{"filename": "x.png", "subfolder": "a", "type": "temp"}], "text": ["hi"]}
    assert fleet_output(ui, "job") == {
        "images": [{"filename": "x.png", "subfolder": "job", "type": "temp"}],
        "text": ["hi"],
    }
