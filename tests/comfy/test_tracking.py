"""Recorded WS sequences, played over a real socket, drive the tracker to the recorded
outcome: the client submits, the replay answers the recorded POST and plays the frames."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from comfyfleet.comfy import ComfyClient, PromptOutcome
from comfyfleet.comfy import events as ev
from tests.comfy.conftest import DEADLINE_S, MakeClient
from tests.support.replay import Gate, ReplayServer, frame, script
from tests.support.traces import WORKFLOWS, binary_payload, load, workflow, ws_messages


def job_prompt_ids(relative: str) -> list[str]:
    """Prompts whose start this socket saw, in order."""
    ids = []
    for m in ws_messages(relative):
        if m.get("kind") == "text" and m["json"]["type"] == "execution_start":
            ids.append(m["json"]["data"]["prompt_id"])
    return ids


def recorded_kind(relative: str, prompt_id: str) -> str | None:
    kinds = {"execution_success": "success", "execution_error": "error",
             "execution_interrupted": "interrupted"}  # fmt: skip
    for m in ws_messages(relative):
        data = m.get("json", {}).get("data") or {}
        if m.get("kind") == "text" and data.get("prompt_id") == prompt_id:
            kind = kinds.get(m["json"]["type"])
            if kind:
                return kind
    return None


async def run_recorded(
    replay: ReplayServer,
    make_client: MakeClient,
    *,
    ws: str,
    post: str | None = None,
    graph: dict[str, Any] | None = None,
    prompt_id: str | None = None,
    history: str | None = None,
    follow_late: bool = False,
    **options: Any,
) -> tuple[ComfyClient, PromptOutcome, list[ev.Event]]:
    """Submit like the recording did and follow the prompt (`follow_late`: only once it
    has ended); returns outcome and events."""
    client_id = load(ws)["client_id"]
    if post is not None:
        trace = replay.http(post)
        graph = trace["request"]["json"]["prompt"]
        prompt_id = trace["body"]["prompt_id"]
    else:
        (prompt_id,) = [prompt_id] if prompt_id else job_prompt_ids(ws)
        replay.json("POST", "/prompt", {"prompt_id": prompt_id, "number": 1, "node_errors": {}})
    if history is not None:
        replay.http(history)
    replay.ws(client_id, script(ws))
    client = make_client(client_id=client_id, **options)
    seen: list[ev.Event] = []

    async def follow() -> None:
        async for event in client.follow(prompt_id):
            seen.append(event)

    async with asyncio.timeout(DEADLINE_S):
        await client.connect()
        accepted = await client.submit(graph or {}, prompt_id=prompt_id)
        if follow_late:
            await client.wait(accepted.prompt_id)
        await follow()
        outcome = await client.wait(accepted.prompt_id)
    return client, outcome, seen


SUCCESS_RUNS = [
    ("04_success_a", "04_success_a/ws_messages.json"),
    *[(f"05_workflows/{n}", f"05_workflows/{n}/ws_messages.json")
      for n in ("b_blur_large", "c_load_invert_save", "d_two_outputs", "g_preview_image_temp",
                "j_mask_composite")],
]  # fmt: skip


@pytest.mark.parametrize(("folder", "ws"), SUCCESS_RUNS)
async def test_success_runs(
    folder: str, ws: str, replay: ReplayServer, make_client: MakeClient
) -> None:
    history = load(f"{folder}/history_prompt_id.json")["body"]
    _, outcome, seen = await run_recorded(
        replay, make_client, ws=ws, post=f"{folder}/post_prompt_response.json", silence_s=5.0
    )
    assert outcome.kind == "success"
    assert outcome.source == "ws"
    assert not outcome.cached
    (entry,) = history.values()
    assert {k: v.ui for k, v in outcome.outputs.items()} == entry["outputs"]
    assert seen[0].kind == "execution_start"
    assert seen[-1] == ev.Executing(node=None, prompt_id=outcome.prompt_id)


async def test_a_prompt_followed_after_its_end_replays_its_events(
    replay: ReplayServer, make_client: MakeClient
) -> None:
    """A fast prompt can end while its POST is answered, before the node's follower starts:
    the follower still gets every event (the node records `started` and `cached` from them
    for the native /history and /ws)."""
    folder = "04_success_a"
    _, _, on_time = await run_recorded(replay, make_client, ws=f"{folder}/ws_messages.json",
                                       post=f"{folder}/post_prompt_response.json")  # fmt: skip
    _, outcome, late = await run_recorded(
        replay, make_client, ws=f"{folder}/ws_messages.json",
        post=f"{folder}/post_prompt_response.json", follow_late=True,
    )  # fmt: skip
    assert outcome.kind == "success"
    assert late == [e for e in on_time if not isinstance(e, ev.PreviewImage)]
    assert {e.kind for e in late} >= {"execution_start", "execution_cached", "executed"}


async def test_execution_error(replay: ReplayServer, make_client: MakeClient) -> None:
    _, outcome, _ = await run_recorded(
        replay, make_client, ws="08_execution_error/ws_messages.json",
        post="08_execution_error/post_prompt_response.json",
    )  # fmt: skip
    assert outcome.kind == "error"
    assert (outcome.node_id, outcome.node_type) == ("1", "LoadImage")
    assert outcome.exception_type == "PIL.UnidentifiedImageError"
    assert "cannot identify image file" in outcome.exception_message
    assert outcome.traceback
    assert outcome.outputs == {}


async def test_two_outputs_one_fails_keeps_the_good_output(
    replay: ReplayServer, make_client: MakeClient
) -> None:
    _, outcome, _ = await run_recorded(
        replay, make_client, ws="08_execution_error/two_outputs_one_fails_ws_messages.json",
        graph=load("08_execution_error/two_outputs_one_fails_workflow.json"),
    )  # fmt: skip
    assert outcome.kind == "error"
    assert outcome.node_id == "1"
    assert outcome.executed == ["3", "4"]
    assert [i.filename for i in outcome.images()] == ["peer_f2_ok_00001_.png"]


@pytest.mark.parametrize("variant", ["", "targeted_"])
async def test_interrupted(variant: str, replay: ReplayServer, make_client: MakeClient) -> None:
    ws = f"09_interrupt/{variant}ws_messages.json"
    _, outcome, _ = await run_recorded(
        replay, make_client, ws=ws, graph=workflow("b_blur_large"), silence_s=5.0
    )
    assert outcome.kind == "interrupted"
    assert (outcome.node_id, outcome.node_type) == ("3", "SaveImage")
    assert outcome.executed == ["1", "2"]


async def test_cached_resubmit_reports_old_files(
    replay: ReplayServer, make_client: MakeClient
) -> None:
    first, second = (
        "06_cached_resubmit/first_run_ws_messages.json",
        "06_cached_resubmit/second_identical_run_ws_messages.json",
    )
    client_id = load(first)["client_id"]
    (first_id,), (second_id,) = job_prompt_ids(first), job_prompt_ids(second)
    graph = load("06_cached_resubmit/second_post_response.json")["request"]["json"]["prompt"]
    replay.json("POST", "/prompt", {"prompt_id": first_id, "number": 19, "node_errors": {}})
    replay.http("06_cached_resubmit/second_post_response.json")
    second_frames = [f for f in (frame(m) for m in ws_messages(second)) if f is not None]
    replay.ws(client_id, [*script(first), Gate(), *second_frames])
    client = make_client(client_id=client_id)
    async with asyncio.timeout(DEADLINE_S):
        one = await client.run(graph, prompt_id=first_id)
        two = await client.run(graph, prompt_id=second_id)
    assert one.kind == "success"
    assert two.kind == "success"
    assert not one.cached
    assert two.cached
    assert two.cached_nodes == ["1", "2"]
    assert [i.filename for i in two.images()] == [i.filename for i in one.images()]


async def test_partially_valid_prompt_runs_and_reports_dropped_outputs(
    replay: ReplayServer, make_client: MakeClient
) -> None:
    post = "07_validation_errors/e7_partially_valid_one_bad_output.json"
    ws = "07_validation_errors/ws_messages_during_all_of_the_above.json"
    _, outcome, _ = await run_recorded(replay, make_client, ws=ws, post=post)
    assert outcome.kind == "success"
    assert set(outcome.node_errors) == {"3"}
    assert outcome.node_errors["3"].error_types == ["value_bigger_than_max"]
    assert [i.filename for i in outcome.images()] == ["peer_e7_ok_00001_.png"]


@pytest.mark.parametrize(
    "name",
    ["SaveImageWebsocket_feature_flags_preview_metadata", "SaveImageWebsocket_no_feature_flags"],
)
async def test_previews_reach_their_prompt(
    name: str, replay: ReplayServer, make_client: MakeClient
) -> None:
    _, outcome, seen = await run_recorded(
        replay,
        make_client,
        ws=f"12_ws/{name}_ws_messages.json",
        graph=workflow("h_ws_binary_image"),
    )
    assert outcome.kind == "success"
    assert outcome.outputs == {}  # SaveImageWebsocket saves nothing
    previews = [e for e in seen if isinstance(e, ev.PreviewImage)]
    variant = name.removeprefix("SaveImageWebsocket_")
    assert [p.image for p in previews] == [
        binary_payload(f"binary_{variant}_frame{n}.png") for n in (1, 2)
    ]
    assert {p.prompt_id for p in previews} == {outcome.prompt_id}


async def test_text_frames_reach_their_prompt(
    replay: ReplayServer, make_client: MakeClient
) -> None:
    _, outcome, seen = await run_recorded(
        replay, make_client, ws="12_ws/GetImageSize_text_frames_ws_messages.json",
        graph=workflow("i_text_frames_get_image_size"),
    )  # fmt: skip
    assert outcome.kind == "success"
    assert outcome.outputs["3"].text == ["320"]
    (text,) = [e for e in seen if isinstance(e, ev.TextFrame)]
    assert text.node_id == "2"
    assert text.text.startswith("width: 320")


async def test_feature_flags_are_the_first_message(
    replay: ReplayServer, make_client: MakeClient
) -> None:
    ws = "12_ws/SaveImageWebsocket_feature_flags_preview_metadata_ws_messages.json"
    client, _, _ = await run_recorded(
        replay, make_client, ws=ws, graph=workflow("h_ws_binary_image")
    )
    first = replay.ws_received[0]
    assert first == (
        client.client_id,
        '{"type":"feature_flags","data":{"supports_preview_metadata":true}}',
    )
    assert client.server_features is not None
    assert client.server_features.max_upload_size == 104857600


async def test_two_clients_each_see_only_their_own(
    replay: ReplayServer, make_client: MakeClient
) -> None:
    clients, runs = [], []
    for name in ("X", "Y"):
        ws, post = f"11_two_clients/ws_{name}.json", f"11_two_clients/post_{name}.json"
        trace = replay.http(post)
        replay.ws(load(ws)["client_id"], script(ws))
        client = make_client(client_id=load(ws)["client_id"])
        clients.append(client)
        runs.append(
            client.run(trace["request"]["json"]["prompt"], prompt_id=trace["body"]["prompt_id"])
        )
    async with asyncio.timeout(DEADLINE_S):
        x, y = await asyncio.gather(*runs)
    assert (x.kind, y.kind) == ("success", "success")
    assert x.prompt_id == "3c2849cb-a5d8-46e9-8a35-a47a37d6483f"
    assert [i.filename for i in x.images()] == ["peer_b_00006_.png"]
    assert y.prompt_id == "7342e5a1-33f0-4c82-b042-6899092af564"
    assert set(y.outputs) == {"2", "5"}


async def test_logs_events_reach_listeners(replay: ReplayServer, make_client: MakeClient) -> None:
    ws = "13_logs/ws_messages_while_subscribed.json"
    client_id = load(ws)["client_id"]
    replay.ws(client_id, script(ws, gate=False))
    replay.http("13_logs/subscribe_response.json")
    client = make_client(client_id=client_id)
    logs: list[ev.Logs] = []
    both = asyncio.Event()

    def on_event(event: ev.Event) -> None:
        if isinstance(event, ev.Logs):
            logs.append(event)
            if len(logs) == 2:
                both.set()

    client.add_listener(on_event)
    prompt_id = job_prompt_ids(ws)[0]
    async with asyncio.timeout(DEADLINE_S):
        client.track(prompt_id)
        await client.subscribe_logs(True)
        outcome = await client.wait(prompt_id)
        await both.wait()
    assert outcome.kind == "success"
    assert [e.m for log in logs for e in log.entries] == [
        "got prompt\n",
        "Prompt executed in 0.02 seconds\n",
    ]


WS_JOB_TRACES = [
    "10_queue/ws_messages.json",
    "10_queue/clear_ws_messages.json",
    "12_ws/SaveImageWebsocket_feature_flags_empty_ws_messages.json",
]


@pytest.mark.parametrize("ws", WS_JOB_TRACES)
async def test_many_jobs_on_one_socket(
    ws: str, replay: ReplayServer, make_client: MakeClient
) -> None:
    """Every prompt this socket saw start reaches the outcome the socket recorded."""
    client_id = load(ws)["client_id"]
    replay.ws(client_id, script(ws))
    client = make_client(client_id=client_id, silence_s=5.0)
    ids = job_prompt_ids(ws)
    assert ids
    async with asyncio.timeout(DEADLINE_S):
        for prompt_id in ids:
            client.track(prompt_id)
        replay.release(client_id)
        outcomes = [await client.wait(pid) for pid in ids]
    assert [o.kind for o in outcomes] == [recorded_kind(ws, pid) for pid in ids]


# The 16 shared workflows and the outcome each produced on the real ComfyUI.
WORKFLOW_OUTCOMES = {
    "a_empty_save": "success", "b_blur_large": "success", "c_load_invert_save": "success",
    "d_two_outputs": "success", "e1_invalid_bad_input_type": "rejected",
    "e2_invalid_missing_node_class": "rejected", "e3_invalid_link_type_mismatch": "rejected",
    "e4_invalid_out_of_range_and_missing_input": "rejected",
    "e5_invalid_no_output_node": "rejected", "e6_invalid_loadimage_missing_file": "rejected",
    "e7_partially_valid_one_bad_output": "success", "f_exec_error_corrupt_image": "error",
    "g_preview_image_temp": "success", "h_ws_binary_image": "success",
    "i_text_frames_get_image_size": "success", "j_mask_composite": "success",
}  # fmt: skip
WORKFLOW_TRACES = {
    "a_empty_save": ("04_success_a/ws_messages.json", "04_success_a/post_prompt_response.json"),
    "e7_partially_valid_one_bad_output": (
        "07_validation_errors/ws_messages_during_all_of_the_above.json",
        "07_validation_errors/e7_partially_valid_one_bad_output.json",
    ),
    "f_exec_error_corrupt_image": (
        "08_execution_error/ws_messages.json", "08_execution_error/post_prompt_response.json"
    ),
    "h_ws_binary_image": (
        "12_ws/SaveImageWebsocket_feature_flags_preview_metadata_ws_messages.json", None
    ),
    "i_text_frames_get_image_size": ("12_ws/GetImageSize_text_frames_ws_messages.json", None),
}  # fmt: skip


def test_workflow_index_is_complete() -> None:
    assert {p.stem for p in WORKFLOWS.glob("*.json")} == set(WORKFLOW_OUTCOMES)


@pytest.mark.parametrize(("name", "kind"), sorted(WORKFLOW_OUTCOMES.items()))
async def test_each_workflow_reaches_its_recorded_outcome(
    name: str, kind: str, replay: ReplayServer, make_client: MakeClient
) -> None:
    graph = workflow(name)
    if kind == "rejected":
        trace = replay.http(f"07_validation_errors/{name}.json")
        client = make_client()
        async with asyncio.timeout(DEADLINE_S):
            outcome = await client.run(graph)
        assert outcome.kind == "rejected"
        assert outcome.error_type == trace["body"]["error"]["type"]
        assert set(outcome.node_errors) == set(trace["body"]["node_errors"])
        return
    folder = f"05_workflows/{name}"
    ws, post = WORKFLOW_TRACES.get(
        name, (f"{folder}/ws_messages.json", f"{folder}/post_prompt_response.json")
    )
    _, outcome, _ = await run_recorded(replay, make_client, ws=ws, post=post, graph=graph)
    assert outcome.kind == kind
