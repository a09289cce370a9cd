"""Interrupts (09_interrupt), against the recordings.

A stall after node 1 (fault injection) holds the job, so an interrupt sent meanwhile lands
"during" node 2 deterministically: ComfyUI then stops at node 3, and so does the sim.
"""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import pytest

from comfyfleet.config import SimConfig
from tests.sim.conftest import Sim
from tests.sim.shapes import assert_same_messages, shape
from tests.support.traces import load, workflow, ws_json_messages


@pytest.fixture
def sim_config(tmp_path: Path) -> SimConfig:
    return SimConfig(port=0, node_ms=1, step_ms=1, data_dir=str(tmp_path), stall_after_nodes=1)


async def _interrupted_run(sim: Sim, targets: list[Any]) -> tuple[list[dict[str, Any]], str]:
    """Run b, send each interrupt body in `targets` while node 2 "runs"; the messages."""
    client_id = uuid.uuid4().hex
    sock = await sim.ws(client_id)
    _, posted = await sim.post_prompt(workflow("b_blur_large"), client_id=client_id)
    await sim.wait_for(lambda: sim.state.faults.stalled)
    for target in targets:
        body = {"prompt_id": posted["prompt_id"]} if target == "RUNNING" else target
        kw = {} if body is None else {"json": body}
        status, answer, _ = await sim.request("POST", "/interrupt", **kw)
        assert (status, answer) == (200, None)
    sim.state.faults.resume()
    await sock.until_done(posted["prompt_id"])
    return sock.messages, posted["prompt_id"]


async def test_global_interrupt_ends_at_the_next_node(sim: Sim) -> None:
    observer = await sim.ws(uuid.uuid4().hex)
    messages, prompt_id = await _interrupted_run(sim, [None])
    assert_same_messages(ws_json_messages("09_interrupt/ws_messages.json"), messages)
    data = next(m for m in messages if m["type"] == "execution_interrupted")["data"]
    assert (data["node_id"], data["node_type"], data["executed"]) == ("3", "SaveImage", ["1", "2"])
    entry = await sim.wait_history(prompt_id)
    recorded = load("09_interrupt/history_prompt_id.json")["body"]
    assert shape(entry) == shape(next(iter(recorded.values())))
    assert entry["status"]["status_str"] == "error"
    assert entry["outputs"] == {}
    await observer.until(
        lambda f: isinstance(f, dict) and f["data"]["status"]["exec_info"]["queue_remaining"] == 0
    )
    recorded_observer = ws_json_messages("09_interrupt/ws_messages_other_client_observer.json")
    assert_same_messages(recorded_observer, observer.messages)


async def test_targeted_interrupt_needs_the_running_id(sim: Sim) -> None:
    messages, _ = await _interrupted_run(sim, [{"prompt_id": "not-running-id"}])
    assert messages[-3]["type"] == "execution_success"

    sim.state.faults.stall_after_nodes = 1
    sim.state.executor.reset()  # same prompt again: make it run rather than hit the cache
    messages, prompt_id = await _interrupted_run(sim, [{"prompt_id": "not-running-id"}, "RUNNING"])
    assert_same_messages(ws_json_messages("09_interrupt/targeted_ws_messages.json"), messages)
    entry = await sim.wait_history(prompt_id)
    recorded = load("09_interrupt/targeted_history.json")["body"]
    assert shape(entry) == shape(next(iter(recorded.values())))


async def test_interrupt_while_idle_is_lost(sim: Sim) -> None:
    status, body, _ = await sim.request("POST", "/interrupt")
    assert (status, body) == (200, None)
    sim.state.faults.stall_after_nodes = None
    _, posted = await sim.post_prompt(workflow("a_empty_save"), client_id=uuid.uuid4().hex)
    entry = await sim.wait_history(posted["prompt_id"])
    assert entry["status"]["status_str"] == "success"
    recorded = load("09_interrupt/job_after_idle_interrupt_history.json")["body"]
    assert shape(entry) == shape(next(iter(recorded.values())))
