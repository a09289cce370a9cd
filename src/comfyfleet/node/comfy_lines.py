"""ComfyUI's output as log events: raw text in, one event per line (or per traceback) out,
each with a level. Pure: no I/O, no clock (callers pass arrival times).

ComfyUI logs with the format `%(message)s` (app/logger.py), so its lines carry no level;
`level_of` reads what the text gives away (a `WARNING:`/`[ERROR]` prefix, a Python warning,
ComfyUI's own error phrases) and calls the rest `info`. A Python traceback is printed as
many lines (on a pipe) or sent as one multi-line entry (the log stream); either way it
becomes ONE event, chained exceptions included. Progress bars redraw with `\\r`: only the
last state of such a line counts, as ComfyUI's own log buffer does.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

TRACEBACK_START = "Traceback (most recent call last):"
CHAIN_LINES = (
    "During handling of the above exception, another exception occurred:",
    "The above exception was the direct cause of the following exception:",
)
# One event's text at most (chars): long tracebacks keep their head and, above all, their
# tail (the exception line).
MAX_EVENT_CHARS = 16 * 1024
_HEAD_CHARS = 4 * 1024
# Lines in one traceback at most; beyond it the traceback is cut into several events.
MAX_TRACEBACK_LINES = 1000
# A pipe line without "\n" for this long (chars) is taken as complete.
MAX_PARTIAL_CHARS = 64 * 1024

_LEVEL_PREFIX = re.compile(
    r"^\s*\[?(?P<level>debug|info|warning|warn|error|critical|fatal)\b\]?\s*[:\]\-\s]", re.I
)
_PY_WARNING = re.compile(r"\b\w*Warning: ")
# An exception line standing alone: `RuntimeError: CUDA error`, `torch.OutOfMemoryError: ...`.
_EXCEPTION = re.compile(r"^[A-Za-z_][\w.]*(?:Error|Exception|Exit|Interrupt)\b:")
_ERROR_PHRASES = (
    "!!! Exception during processing !!!",
    "Failed to validate prompt for output",
    "Output will be ignored",
    "Got an OOM",
    "Exception in thread",
)
_WARNING_PHRASES = ("invalid prompt:",)
_LEVEL_NAMES = {"warn": "warning", "fatal": "critical"}


@dataclass(frozen=True)
class ComfyLine:
    """One log event from ComfyUI. `text` has no trailing newline; a traceback's lines are
    joined with "\\n". `at` is when its first line arrived (monotonic s), `stream` where it
    came from (`stdout`, `stderr`, or `log` for ComfyUI's log stream), `comfy_t` ComfyUI's
    own timestamp when it sent one (ISO 8601, its local time)."""

    text: str
    level: str
    stream: str
    at: float
    comfy_t: str | None = None
    # From a backlog read after the fact (ComfyUI's /internal/logs/raw): no prompt is known.
    replayed: bool = False


def level_of(text: str) -> str:
    """The level a line gives away; `info` when it says nothing."""
    if text.startswith(TRACEBACK_START):
        return "error"
    if match := _LEVEL_PREFIX.match(text):
        name = match["level"].lower()
        return _LEVEL_NAMES.get(name, name)
    if _EXCEPTION.match(text) or any(phrase in text for phrase in _ERROR_PHRASES):
        return "error"
    if _PY_WARNING.search(text) or any(text.startswith(p) for p in _WARNING_PHRASES):
        return "warning"
    return "info"


def exception_line(text: str) -> str | None:
    """The exception line of a traceback event (`ValueError: bad`), else None."""
    if not text.startswith(TRACEBACK_START):
        return None
    for line in reversed(text.splitlines()):
        if line.strip() and not line[:1].isspace():
            return line.strip()
    return None


def cap(text: str, limit: int = MAX_EVENT_CHARS) -> str:
    """`text` within `limit` chars: its head and its tail, the cut said in the middle."""
    if len(text) <= limit:
        return text
    tail = limit - _HEAD_CHARS - 64
    cut = len(text) - _HEAD_CHARS - tail
    return f"{text[:_HEAD_CHARS]}\n… ({cut} characters cut) …\n{text[-tail:]}"


def last_state(line: str) -> str:
    """What a terminal shows of a line redrawn with carriage returns: its last state."""
    if "\r" not in line:
        return line
    parts = [p for p in line.split("\r") if p.strip()]
    return parts[-1] if parts else ""


class Splitter:
    """Bytes or text in arbitrary pieces -> complete lines (without "\\n")."""

    def __init__(self) -> None:
        self._partial = ""

    def feed(self, piece: str) -> list[str]:
        text = self._partial + piece
        *lines, self._partial = text.split("\n")
        if len(self._partial) > MAX_PARTIAL_CHARS:
            lines.append(self._partial)
            self._partial = ""
        return [last_state(line) for line in lines]

    def rest(self) -> list[str]:
        """The unterminated last line, at the end of the stream."""
        rest, self._partial = self._partial, ""
        return [last_state(rest)] if rest.strip() else []


@dataclass
class _Traceback:
    lines: list[str]
    at: float
    comfy_t: str | None
    replayed: bool
    state: str = "frames"  # frames | after (exception line seen) | chain
    blanks: int = 0  # blank lines held after the exception line


@dataclass
class Grouper:
    """Lines of one stream -> events: each line its own event, except that a traceback's
    lines become one. A traceback is complete only when the next line shows it did not go
    on (a chained exception follows a blank line), so the caller calls `flush()` after a
    short quiet spell and at the end of the stream."""

    stream: str
    _tb: _Traceback | None = field(default=None, repr=False)

    @property
    def holding(self) -> bool:
        """A traceback waits for its end."""
        return self._tb is not None

    def feed(
        self, line: str, at: float, comfy_t: str | None = None, *, replayed: bool = False
    ) -> list[ComfyLine]:
        out: list[ComfyLine] = []
        tb = self._tb
        if tb is not None and not self._continues(tb, line):
            out += self.flush()
            tb = None
        if tb is None:
            if line.startswith(TRACEBACK_START):
                self._tb = _Traceback([line], at, comfy_t, replayed)
            elif line.strip():
                out.append(self._event(line, at, comfy_t, replayed))
        elif len(tb.lines) >= MAX_TRACEBACK_LINES:
            out += self.flush()
        return out

    def _continues(self, tb: _Traceback, line: str) -> bool:
        """Take `line` into the traceback if it belongs there; False ends the traceback."""
        indented = line[:1].isspace()
        if tb.state == "frames":
            if line.strip() and not indented:
                tb.state = "after"  # the exception line
            tb.lines.append(line)
            return True
        if not line.strip():
            tb.blanks += 1
            return True
        if line in CHAIN_LINES or (tb.state == "chain" and line.startswith(TRACEBACK_START)):
            tb.lines += [""] * tb.blanks + [line]
            tb.blanks = 0
            tb.state = "frames" if line.startswith(TRACEBACK_START) else "chain"
            return True
        if tb.state == "after" and indented and not tb.blanks:
            tb.lines.append(line)  # an exception message that runs over several lines
            return True
        return False

    def flush(self) -> list[ComfyLine]:
        """The held traceback as one event (nothing if none is held)."""
        tb, self._tb = self._tb, None
        if tb is None:
            return []
        return [self._event("\n".join(tb.lines), tb.at, tb.comfy_t, tb.replayed)]

    def _event(self, text: str, at: float, comfy_t: str | None, replayed: bool) -> ComfyLine:
        text = cap(text.rstrip())
        return ComfyLine(
            text=text, level=level_of(text), stream=self.stream, at=at, comfy_t=comfy_t,
            replayed=replayed,
        )  # fmt: skip
