"""Queue semantics (10_queue, 15_extra): numbers, heap order, delete, clear, custom ids.

A stall (fault injection) holds the first job "running" so the rest stay pending, which is
what a long job did in the recordings.
"""

from __future__ import annotations

import uuid
from typing import Any

from tests.sim.conftest import Sim
from tests.sim.shapes import assert_same_messages, job_messages, shape
from tests.support.traces import load, workflow, ws_json_messages


def quick(color: int) -> dict[str, Any]:
    prompt = workflow("a_empty_save")
    prompt["1"]["inputs"]["color"] = color
    return prompt


async def test_busy_queue_delete_front_number_and_custom_id(sim: Sim) -> None:
    client_id = uuid.uuid4().hex
    sock = await sim.ws(client_id)
    sim.state.faults.stall()
    posts: dict[str, Any] = {}
    extras: dict[str, dict[str, Any]] = {
        "A": {},
        "B": {},
        "C": {},
        "D": {"front": True},
        "E": {"number": 0.5},
        "F": {"prompt_id": "my-own-prompt-id-123"},
    }
    for index, (name, extra) in enumerate(extras.items()):
        prompt = workflow("b_blur_large") if name == "A" else quick(index)
        status, posts[name] = await sim.post_prompt(prompt, client_id=client_id, **extra)
        recorded = load(f"10_queue/post_{name}.json")["body"]
        assert status == 200
        assert shape(posts[name]) == shape(recorded)
    assert posts["D"]["number"] == -3
    assert posts["E"]["number"] == 0.5
    assert posts["F"]["prompt_id"] == "my-own-prompt-id-123"
    await sim.wait_for(lambda: len(sim.state.queue.running) == 1)

    by_number = {p["number"]: name for name, p in posts.items()}
    recorded_names = {load(f"10_queue/post_{n}.json")["body"]["number"]: n for n in extras}
    status, busy, _ = await sim.request("GET", "/queue")
    recorded_busy = load("10_queue/queue_busy.json")["body"]
    assert shape(busy) == shape(recorded_busy)
    assert [by_number[i[0]] for i in busy["queue_pending"]] == [
        recorded_names[i[0]] for i in recorded_busy["queue_pending"]
    ]
    assert (await sim.request("GET", "/prompt"))[1] == load("10_queue/prompt_get_busy.json")["body"]

    for target in (posts["C"]["prompt_id"], posts["A"]["prompt_id"], "unknown-id"):
        status, body, _ = await sim.request("POST", "/queue", json={"delete": [target]})
        assert (status, body) == (200, None)
    _, after, _ = await sim.request("GET", "/queue")
    recorded_after = load("10_queue/queue_after_delete.json")["body"]
    assert [by_number[i[0]] for i in after["queue_pending"]] == [
        recorded_names[i[0]] for i in recorded_after["queue_pending"]
    ]
    assert [by_number[i[0]] for i in after["queue_running"]] == ["A"]

    sim.state.faults.resume()
    await sock.until_done("my-own-prompt-id-123")
    history = (await sim.request("GET", "/history"))[1]
    assert [by_number[entry["prompt"][0]] for entry in history.values()] == [
        "A",
        "D",
        "E",
        "B",
        "F",
    ]
    assert await sim.history(posts["C"]["prompt_id"]) == {}
    recorded_f = load("10_queue/history_custom_prompt_id_F.json")["body"]
    assert shape(history["my-own-prompt-id-123"]) == shape(recorded_f["my-own-prompt-id-123"])

    recorded_ws = ws_json_messages("10_queue/ws_messages.json")
    for name in ("A", "D", "E", "B"):
        recorded_id = load(f"10_queue/post_{name}.json")["body"]["prompt_id"]
        assert_same_messages(
            job_messages(recorded_ws, recorded_id),
            job_messages(sock.messages, posts[name]["prompt_id"]),
        )


async def test_duplicate_custom_prompt_id_overwrites_history(sim: Sim) -> None:
    sim.state.faults.stall()
    first = (await sim.post_prompt(quick(1), prompt_id="dup-id"))[1]
    second = (await sim.post_prompt(quick(2), prompt_id="dup-id"))[1]
    third = (await sim.post_prompt(quick(3), prompt_id="dup-id"))[1]
    await sim.wait_for(lambda: len(sim.state.queue.running) == 1)
    assert sim.state.queue.pending_ids() == ["dup-id", "dup-id"]
    sim.state.faults.resume()
    await sim.wait_for(lambda: sim.state.queue.remaining() == 0)
    entry = await sim.wait_history("dup-id")
    assert entry["prompt"][0] == third["number"] > second["number"] > first["number"]
    recorded = load("10_queue/duplicate_custom_prompt_id_history.json")["body"][
        "my-own-prompt-id-123"
    ]
    assert shape(entry) == shape(recorded)


async def test_clear_empties_pending_only(sim: Sim) -> None:
    client_id = uuid.uuid4().hex
    sock = await sim.ws(client_id)
    sim.state.faults.stall()
    posted = [(await sim.post_prompt(quick(c), client_id=client_id))[1] for c in (1, 2, 3)]
    await sim.wait_for(lambda: len(sim.state.queue.running) == 1)
    status, body, _ = await sim.request("POST", "/queue", json={"clear": True})
    assert (status, body) == (200, None)
    _, queue, _ = await sim.request("GET", "/queue")
    recorded = load("10_queue/queue_after_clear.json")["body"]
    assert queue["queue_pending"] == recorded["queue_pending"] == []
    assert [i[1] for i in queue["queue_running"]] == [posted[0]["prompt_id"]]
    sim.state.faults.resume()
    await sock.until_done(posted[0]["prompt_id"])
    for job in posted[1:]:
        assert await sim.history(job["prompt_id"]) == {}


async def test_numbering_counts_rejected_posts_and_explicit_numbers_are_floats(sim: Sim) -> None:
    extra = load("15_extra/extra_checks.json")["numbering"]
    valid = (await sim.post_prompt(quick(1)))[1]["number"]
    assert (await sim.post_prompt({"1": {"inputs": {}}}))[0] == extra["invalid_400_status"]
    next_valid = (await sim.post_prompt(quick(2)))[1]["number"]
    _status, body, _ = await sim.request(
        "POST", "/prompt", json={"prompt": quick(3), "number": 1000}
    )
    explicit = body["number"]
    after = (await sim.post_prompt(quick(4)))[1]["number"]
    assert next_valid - valid == extra["next_valid"] - extra["valid"] == 2
    assert isinstance(explicit, float)
    assert explicit == extra["explicit_1000"]
    assert after - next_valid == extra["after_explicit"] - extra["next_valid"]


async def test_front_items_are_lifo_and_pending_is_heap_order(sim: Sim) -> None:
    extra = load("15_extra/extra_checks.json")["front"]
    sim.state.faults.stall()
    blocker = (await sim.post_prompt(quick(0)))[1]
    names: dict[float, str] = {blocker["number"]: "blocker"}
    fronts = {"N1": None, "F1": True, "N2": None, "F2": True, "F3_front_false": False}
    for index, (name, front) in enumerate(fronts.items(), start=1):
        kw = {} if front is None else {"front": front}
        names[(await sim.post_prompt(quick(index), **kw))[1]["number"]] = name
    await sim.wait_for(lambda: len(sim.state.queue.running) == 1)
    _, queue, _ = await sim.request("GET", "/queue")
    assert [names[i[0]] for i in queue["queue_pending"]] == extra["queue_pending_array_order"]
    sim.state.faults.resume()
    await sim.wait_for(lambda: len(sim.state.queue.history) == 6)
    order = [names[e["prompt"][0]] for e in sim.state.queue.history.values()]
    assert order == extra["execution_order"]
