"""Faults: dropped sockets, stalls, deleted and lost prompts, unreachable servers. Every
wait has a deadline; the client's silence bound is 50 ms here (see conftest.FAST)."""

from __future__ import annotations

import asyncio
import socket
from pathlib import Path

import pytest
from aiohttp import web

from comfyfleet.comfy import ComfyClient, ComfyUnavailable, ImageRef, WaitTimeout
from comfyfleet.comfy import events as ev
from tests.comfy.conftest import DEADLINE_S, FAST, MakeClient
from tests.support.replay import Drop, ReplayServer, recorded_body, script
from tests.support.traces import load

A_WS = "04_success_a/ws_messages.json"
A_POST = "04_success_a/post_prompt_response.json"
A_ID = "e9f60a61-4c1d-453f-996c-a18f796d7d6b"
B_WS = "05_workflows/b_blur_large/ws_messages.json"
B_ID = "0ca59dca-b2e7-407f-9457-7a102cd9c0bf"


def graph_of(post: str) -> dict[str, object]:
    graph: dict[str, object] = load(post)["request"]["json"]["prompt"]
    return graph


def queue_with(running: list[str], pending: list[str]) -> dict[str, object]:
    return {
        "queue_running": [[1, pid, {}, {}, []] for pid in running],
        "queue_pending": [[2, pid, {}, {}, []] for pid in pending],
    }


async def test_socket_dropped_mid_job_recovers_from_history(
    replay: ReplayServer, make_client: MakeClient
) -> None:
    client_id = load(A_WS)["client_id"]
    replay.http(A_POST)
    replay.ws(client_id, [*script(A_WS, cut_after=7), Drop()])  # up to `executing 1`
    replay.ws(client_id, script(A_WS, gate=False, cut_after=1))  # reconnect: status only
    replay.http("04_success_a/history_prompt_id.json")
    replay.http("01_get/queue_idle.json")
    client = make_client(client_id=client_id, silence_s=5.0)
    async with asyncio.timeout(DEADLINE_S):
        outcome = await client.run(graph_of(A_POST), prompt_id=A_ID)
    assert outcome.kind == "success"
    assert outcome.source == "history"
    assert [i.filename for i in outcome.images()] == ["peer_a_00001_.png"]
    assert replay.ws_connects == [client_id, client_id]  # same clientId re-registered
    first_messages = [m for cid, m in replay.ws_received if "feature_flags" in str(m)]
    assert len(first_messages) == 2  # feature flags again on the new socket


async def test_stall_is_cross_checked_and_waits_while_running(
    replay: ReplayServer, make_client: MakeClient
) -> None:
    """A 2048² blur sends nothing for seconds: the watchdog asks, sees it running, keeps
    waiting, and resolves from history once it is there."""
    client_id = load(B_WS)["client_id"]
    post = "05_workflows/b_blur_large/post_prompt_response.json"
    replay.http(post)
    replay.ws(client_id, script(B_WS, cut_after=12))  # stalls inside node 2
    replay.json("GET", "/queue", queue_with([B_ID], []))
    replay.json("GET", "/queue", queue_with([B_ID], []))
    replay.json("GET", "/queue", queue_with([], []))
    replay.json("GET", f"/history/{B_ID}", {})
    replay.json("GET", f"/history/{B_ID}", {})
    replay.http("05_workflows/b_blur_large/history_prompt_id.json")
    client = make_client(client_id=client_id)
    async with asyncio.timeout(DEADLINE_S):
        outcome = await client.run(graph_of(post), prompt_id=B_ID)
    assert outcome.kind == "success"
    assert outcome.source == "watchdog"
    assert len(replay.calls("GET", "/queue")) == 3
    assert [i.filename for i in outcome.images()] == ["peer_b_00001_.png"]


async def test_deleted_from_queue_is_reported_not_waited_for(
    replay: ReplayServer, make_client: MakeClient
) -> None:
    post = replay.http("10_queue/post_C.json")
    client_id = post["request"]["json"]["client_id"]
    replay.ws(client_id, script("10_queue/ws_messages.json", gate=False, cut_after=1))
    replay.http("10_queue/queue_after_delete.json")
    replay.http("10_queue/history_deleted_C.json")
    client = make_client(client_id=client_id)
    async with asyncio.timeout(DEADLINE_S):
        outcome = await client.run(
            post["request"]["json"]["prompt"], prompt_id=post["body"]["prompt_id"]
        )
    assert outcome.kind == "deleted"
    assert outcome.prompt_id == "1147847d-a6fa-49b9-8f47-469032718dc0"


async def test_restart_loses_history_and_queue(
    replay: ReplayServer, make_client: MakeClient
) -> None:
    client_id = load(A_WS)["client_id"]
    replay.http(A_POST)
    replay.ws(client_id, [*script(A_WS, cut_after=5), Drop()])  # started, then the restart
    replay.ws(client_id, script(A_WS, gate=False, cut_after=1))  # a fresh, idle server
    replay.http("01_get/queue_idle.json")
    replay.http("14_misc/history_unknown_id.json", path=f"/history/{A_ID}")
    client = make_client(client_id=client_id)
    async with asyncio.timeout(DEADLINE_S):
        outcome = await client.run(graph_of(A_POST), prompt_id=A_ID)
    assert outcome.kind == "lost"


async def test_reconnect_executing_without_prompt_id_is_not_misrouted(
    replay: ReplayServer, make_client: MakeClient
) -> None:
    first = "12_ws/reconnect_same_clientId_first_socket.json"
    second = "12_ws/reconnect_same_clientId_second_socket.json"
    client_id = load(first)["client_id"]
    running, other = "95d0d4db-ca2a-4d1d-a376-685ba333bce9", "other-pending-prompt"
    replay.ws(client_id, [*script(first), Drop()])
    replay.ws(client_id, script(second, gate=False))
    replay.json("GET", "/queue", queue_with([running], [other]))
    replay.json("GET", f"/history/{running}", {})  # finishes later, over the socket
    replay.json("GET", f"/history/{other}", {})
    client = make_client(client_id=client_id, silence_s=5.0)
    events: list[ev.Event] = []
    client.add_listener(events.append)
    async with asyncio.timeout(DEADLINE_S):
        client.track(running)
        waiting = client.track(other)
        replay.release(client_id)
        outcome = await client.wait(running)
    assert outcome.kind == "success"
    assert [i.filename for i in outcome.images()] == ["peer_b_00007_.png"]
    assert ev.Executing(node="2") in events  # it came, and went nowhere:
    assert not waiting.done
    assert waiting.subscribe().empty()


async def test_unlabeled_preview_goes_to_the_running_prompt_only(make_client: MakeClient) -> None:
    client = make_client()
    running, other = client.track("running"), client.track("other")
    route = client._router.route
    route(ev.ExecutionStart(prompt_id="running"))
    route(ev.Executing(node="7", prompt_id="running"))
    route(ev.Executing(node="3"))  # the reconnect-time one: changes nothing
    route(ev.PreviewImage(event_type=1, image_format="png", image=b"img"))
    route(ev.Executing(node=None))  # no prompt_id: finishes nothing
    assert not running.done
    previews = [e for e in _drain(running) if isinstance(e, ev.PreviewImage)]
    assert [p.prompt_id for p in previews] == ["running"]
    assert _drain(other) == []
    await client.close()


def _drain(tracker: object) -> list[ev.Event]:
    queue = tracker.subscribe()  # type: ignore[attr-defined]
    return [queue.get_nowait() for _ in range(queue.qsize())]


async def test_unreachable_server_is_a_retryable_error() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    async with ComfyClient(f"http://127.0.0.1:{port}", options=FAST) as client:
        with pytest.raises(ComfyUnavailable) as caught:
            await client.queue()
        assert caught.value.retryable
        with pytest.raises(ComfyUnavailable):
            await client.connect(timeout=0.2)


async def test_wait_timeout_is_typed(replay: ReplayServer, make_client: MakeClient) -> None:
    client = make_client(silence_s=60.0)
    client.track("never")
    with pytest.raises(WaitTimeout) as caught:
        await client.wait("never", timeout=0.05)
    assert isinstance(caught.value, TimeoutError)
    assert caught.value.retryable


async def test_download_streams_in_chunks(
    replay: ReplayServer, make_client: MakeClient, tmp_path: Path
) -> None:
    trace = replay.http("04_success_a/view_output_image.json")
    client = make_client(download_chunk_bytes=512)
    ref = ImageRef(filename="peer_a_00001_.png")
    dest = tmp_path / "out.png"
    assert await client.download(ref, dest) == trace["body_len"]
    assert dest.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not (tmp_path / "out.png.part").exists()
    chunks: list[bytes] = []

    class Sink:
        async def write(self, data: bytes) -> None:
            chunks.append(data)

    assert await client.download(ref, Sink()) == 2104
    assert len(chunks) > 1
    assert max(map(len, chunks)) <= 512


async def test_follow_of_a_finished_foreign_prompt_resolves_from_history(
    replay: ReplayServer, make_client: MakeClient
) -> None:
    replay.http("01_get/queue_idle.json")
    replay.http("08_execution_error/history_prompt_id.json")
    client = make_client(silence_s=60.0)
    async with asyncio.timeout(DEADLINE_S):
        events = [e async for e in client.follow("833bf388-dd6b-4051-89d0-dbc5d368f7f1")]
        outcome = await client.wait("833bf388-dd6b-4051-89d0-dbc5d368f7f1")
    assert events == []
    assert outcome.kind == "error"
    assert outcome.node_type == "LoadImage"


async def test_a_slow_post_is_not_called_deleted_by_the_watchdog() -> None:
    """ComfyUI may answer POST /prompt long after the silence bound (a big graph to
    validate, a busy box). Until it answers, the prompt is in neither /queue nor /history,
    and the watchdog must not take that absence as a deletion (it did, under load)."""
    post, history = load(A_POST), load(f"{A_WS.split('/')[0]}/history_prompt_id.json")
    accepted = asyncio.Event()
    history_reads_while_posting = 0

    async def prompt(request: web.Request) -> web.Response:
        await request.read()
        await asyncio.sleep(10 * FAST.silence_s)  # the slow server under test, not a wait
        accepted.set()
        return web.Response(body=recorded_body(post), content_type="application/json")

    async def queue(_: web.Request) -> web.Response:
        return web.json_response({"queue_running": [], "queue_pending": []})

    async def one_history(_: web.Request) -> web.Response:
        nonlocal history_reads_while_posting
        if not accepted.is_set():
            history_reads_while_posting += 1
            return web.json_response({})
        return web.Response(body=recorded_body(history), content_type="application/json")

    async def socket(request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        async for _ in ws:
            pass
        return ws

    app = web.Application()
    app.router.add_post("/prompt", prompt)
    app.router.add_get("/queue", queue)
    app.router.add_get("/history/{prompt_id}", one_history)
    app.router.add_get("/ws", socket)
    runner = web.AppRunner(app, handle_signals=False)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    url = f"http://127.0.0.1:{runner.addresses[0][1]}"
    client = ComfyClient(url, options=FAST)
    try:
        async with asyncio.timeout(DEADLINE_S):
            outcome = await client.run(graph_of(A_POST), prompt_id=A_ID)
    finally:
        await client.close()
        await runner.cleanup()
    assert outcome.kind == "success"
    assert history_reads_while_posting == 0
