"""The stand-in's log of a failing node, held to what ComfyUI 0.3.64 recorded: the exception
line, then the whole traceback as ONE entry ending in a blank line, in `/internal/logs/raw`
and in the `logs` frames of a subscribed socket; a subscription whose socket is gone is
dropped; the CLI's lines also reach stderr."""

from __future__ import annotations

import asyncio
import io
import sys
import uuid

import orjson

from comfyfleet.sim.faults import Faults
from comfyfleet.sim.hub import Hub
from tests.sim.conftest import Sim
from tests.sim.shapes import shape
from tests.support.traces import load, workflow


def _recorded_failure() -> tuple[dict[str, str], dict[str, str]]:
    """The recorded `!!! Exception ...` entry and the traceback entry after it."""
    body = orjson.loads(load("13_logs/internal_logs_raw_after_jobs.json")["body_raw"])
    entries = body["entries"]
    index = next(i for i, e in enumerate(entries) if e["m"].startswith("!!! Exception"))
    return entries[index], entries[index + 1]


async def test_a_failing_node_logs_its_traceback_as_comfyui_does(sim: Sim) -> None:
    client_id = uuid.uuid4().hex
    sock = await sim.ws(client_id)
    await sim.request(
        "PATCH", "/internal/logs/subscribe", json={"clientId": client_id, "enabled": True}
    )
    sim.state.faults.fail_node_types = {"SaveImage"}
    _, posted = await sim.post_prompt(workflow("a_empty_save"), client_id=client_id)
    await sock.until_done(posted["prompt_id"])
    await sock.until(lambda f: isinstance(f, dict) and f["type"] == "logs"
                     and f["data"]["entries"][0]["m"].startswith("Prompt executed"))  # fmt: skip

    recorded_header, recorded_traceback = _recorded_failure()
    _, raw, _ = await sim.request("GET", "/internal/logs/raw")
    entries = raw["entries"]
    index = next(i for i, e in enumerate(entries) if e["m"].startswith("!!! Exception"))
    header, traceback = entries[index], entries[index + 1]
    assert shape(header) == shape(recorded_header)
    assert header["m"] == (
        "!!! Exception during processing !!! sim: injected failure in SaveImage (node 2)\n"
    )
    assert shape(traceback) == shape(recorded_traceback)
    assert traceback["m"].startswith("Traceback (most recent call last):\n  File ")
    # format_exc()'s newline plus the logging handler's, as recorded
    assert traceback["m"].endswith("\n\n")
    assert recorded_traceback["m"].endswith("\n\n")
    assert traceback["m"].rstrip().splitlines()[-1] == (
        "comfyfleet.sim.faults.InjectedFailure: sim: injected failure in SaveImage (node 2)"
    )
    # The socket got the same two entries, each as its own frame, before the job ended.
    frames = [m["data"] for m in sock.messages if m["type"] == "logs"]
    assert {"entries": [header], "size": None} in frames
    assert {"entries": [traceback], "size": None} in frames
    kinds = [m["type"] for m in sock.messages]
    assert kinds.index("logs", kinds.index("execution_start")) < kinds.index("execution_error")


async def test_a_subscription_ends_with_its_socket(sim: Sim) -> None:
    client_id = uuid.uuid4().hex
    sock = await sim.ws(client_id)
    await sim.request(
        "PATCH", "/internal/logs/subscribe", json={"clientId": client_id, "enabled": True}
    )
    assert client_id in sim.state.hub.log_subscribers
    await sock.ws.close()
    await sim.wait_for(lambda: client_id not in sim.state.hub.sockets)
    sim.state.hub.log("a line after the socket went")
    assert client_id not in sim.state.hub.log_subscribers


async def test_the_cli_echoes_log_lines_to_stderr() -> None:
    out = io.StringIO()
    hub = Hub(Faults(), echo=out)
    hub.log("got prompt")
    hub.log('Traceback (most recent call last):\n  File "x"\nValueError: v\n')
    assert out.getvalue() == (
        'got prompt\nTraceback (most recent call last):\n  File "x"\nValueError: v\n\n'
    )
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "comfyfleet", "sim", "--listen", "127.0.0.1", "--port", "0",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    try:
        assert proc.stderr is not None
        first = await asyncio.wait_for(proc.stderr.readline(), 30)
        assert first.startswith(b"ComfyUI version: 0.3.64")
    finally:
        proc.terminate()
        await proc.wait()
