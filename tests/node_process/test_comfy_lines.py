"""ComfyUI's output as log events (pure): tracebacks as one event, levels, `\\r` redraws,
the recorded log buffer of a real ComfyUI 0.3.64, and secrets redacted."""

from __future__ import annotations

import orjson

from comfyfleet.logs.redact import redact
from comfyfleet.node.comfy_lines import (
    MAX_EVENT_CHARS,
    ComfyLine,
    Grouper,
    Splitter,
    cap,
    exception_line,
    level_of,
)
from tests.support.traces import load

CHAINED = """!!! Exception during processing !!! cannot identify image file 'x.png'
Traceback (most recent call last):
  File "/opt/ComfyUI/node_helpers.py", line 27, in pillow
    x = fn(arg)
        ^^^^^^^
PIL.UnidentifiedImageError: cannot identify image file 'x.png'

During handling of the above exception, another exception occurred:

Traceback (most recent call last):
  File "/opt/ComfyUI/execution.py", line 496, in execute
    output_data = await get_output_data(prompt_id)
PIL.UnidentifiedImageError: cannot identify image file 'x.png'


Prompt executed in 0.01 seconds
"""


def _events(text: str, stream: str = "stderr") -> list[ComfyLine]:
    splitter, grouper = Splitter(), Grouper(stream)
    out: list[ComfyLine] = []
    for number, line in enumerate(splitter.feed(text)):
        out += grouper.feed(line, float(number))
    return out + grouper.flush()


def test_a_chained_traceback_printed_line_by_line_is_one_event() -> None:
    events = _events(CHAINED)
    assert [e.level for e in events] == ["error", "error", "info"]
    header, traceback, done = events
    assert header.text.startswith("!!! Exception during processing !!!")
    assert traceback.text.startswith("Traceback (most recent call last):")
    assert "During handling of the above exception" in traceback.text
    assert traceback.text.count("Traceback (most recent call last):") == 2
    assert traceback.text.endswith("PIL.UnidentifiedImageError: cannot identify image file 'x.png'")
    assert exception_line(traceback.text) == (
        "PIL.UnidentifiedImageError: cannot identify image file 'x.png'"
    )
    assert traceback.at == 1.0  # when its first line came
    assert done.text == "Prompt executed in 0.01 seconds"


def test_a_traceback_waits_for_its_end_until_flushed() -> None:
    grouper = Grouper("stderr")
    assert grouper.feed("Traceback (most recent call last):", 0.0) == []
    assert grouper.feed('  File "a.py", line 1, in <module>', 0.1) == []
    assert grouper.feed("ValueError: bad", 0.2) == []
    assert grouper.holding  # a chained exception could still follow
    [event] = grouper.flush()
    assert event.text.splitlines()[-1] == "ValueError: bad"
    assert not grouper.holding
    assert grouper.flush() == []


def test_levels_are_read_from_what_the_text_gives_away() -> None:
    assert level_of("got prompt") == "info"
    assert level_of("WARNING: some comfy_extras/ nodes did not import correctly.") == "warning"
    assert level_of("[ERROR] CUDA out of memory") == "error"
    assert level_of("Error handling request from 127.0.0.1") == "error"
    assert level_of("/x.py:3: UserWarning: TypedStorage is deprecated") == "warning"
    assert level_of("invalid prompt: {'type': 'prompt_no_outputs'}") == "warning"
    assert level_of("Failed to validate prompt for output 2:") == "error"
    assert level_of("Informative text without a level") == "info"
    assert level_of("torch.OutOfMemoryError: CUDA out of memory.") == "error"


def test_carriage_return_redraws_keep_their_last_state_and_pieces_join() -> None:
    splitter = Splitter()
    assert splitter.feed(" 10%|#   |\r 50%|#### ") == []
    assert splitter.feed("|\r100%|########|\nnext") == ["100%|########|"]
    assert splitter.rest() == ["next"]


def test_a_huge_event_keeps_its_head_and_its_exception_line() -> None:
    text = "Traceback (most recent call last):\n" + "  x\n" * 20_000 + "ValueError: end"
    capped = cap(text)
    assert len(capped) <= MAX_EVENT_CHARS
    assert capped.startswith("Traceback")
    assert capped.endswith("ValueError: end")
    assert "characters cut" in capped


def test_the_recorded_log_buffer_gives_one_event_per_traceback() -> None:
    """Entries of a real ComfyUI's /internal/logs/raw, fed as the log stream delivers them."""
    body = orjson.loads(load("13_logs/internal_logs_raw_after_jobs.json")["body_raw"])
    splitter, grouper = Splitter(), Grouper("log")
    events: list[ComfyLine] = []
    for entry in body["entries"]:
        for line in splitter.feed(entry["m"]):
            events += grouper.feed(line, 0.0, entry["t"])
    events += grouper.flush()
    tracebacks = [e for e in events if e.text.startswith("Traceback (most recent call last):")]
    messages = [entry["m"] for entry in body["entries"]]
    recorded = sum(m.count("Traceback (most recent call last):") for m in messages)
    chained = sum(m.count("During handling of the above") for m in messages)
    assert len(tracebacks) == recorded - chained  # a chained traceback is one event
    assert all(e.level == "error" for e in tracebacks)
    corrupt = [e for e in tracebacks if "peer_corrupt.png" in e.text]
    assert corrupt
    path = "/srv/comfyui/input/peer_corrupt.png"
    assert exception_line(corrupt[0].text) == (
        f"PIL.UnidentifiedImageError: cannot identify image file '{path}'"
    )
    assert corrupt[0].comfy_t is not None
    assert not any(e.text == "" for e in events)


def test_secrets_are_redacted_from_lines() -> None:
    line = (
        "Downloading https://alice:hunter2@models.example.com/x.safetensors with "
        "Authorization: Bearer abcdef123456 api_key=sk-0123456789abcdef0123 token: t0k3nv4lu3 "
        '{"api_key_comfy_org": "comfyui-0123456789abcdef0123"} key cfk_0123456789ab_s3cr3ts3cr3t'
    )
    clean = redact(line)
    for secret in ("hunter2", "abcdef123456", "sk-0123456789abcdef0123", "t0k3nv4lu3",
                   "comfyui-0123456789abcdef0123", "s3cr3ts3cr3t"):  # fmt: skip
        assert secret not in clean
    assert "https://alice:***@models.example.com/x.safetensors" in clean
    assert "Authorization: Bearer ***" in clean
    assert redact("got prompt") == "got prompt"
