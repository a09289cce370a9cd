"""The node runs its ComfyUI itself (`--comfy-cmd`): starts it, watches it, restarts it.

- **Start**: the command (split like a shell would, never run by one) gets
  `--listen 127.0.0.1 --port P` appended, P a free loopback port chosen once per node life,
  unless it says where itself with `{port}` (and `{host}`). It runs in `--comfy-dir`, in a
  process group of its own, with this fleet's secrets taken out of its environment.
- **Ready**: it counts as started once `/system_stats` answers (within the start timeout).
- **Restart**: when it exits, stops answering for `hang_s`, or the hang watchdog finds it
  hung, it is stopped (group SIGTERM, SIGKILL after the grace) and started again after a
  backoff that doubles per failed life up to a cap, and starts over once a life stayed up
  `STABLE_S`. Meanwhile the node reports `unhealthy` with the process's last output lines,
  and the jobs that were inside it come back through the usual retry path (`comfy_lost`).
- **Dies with the node**: the child asks the kernel for SIGKILL when its parent dies
  (Linux `PR_SET_PDEATHSIG`, see `comfyfleet/children.py`), so even a node killed with
  SIGKILL leaves no ComfyUI holding its port or GPU memory. The signal follows the thread
  that forked the child: the node starts it from its event loop, on the main thread, which
  lives as long as the node. A wrapper script must `exec` ComfyUI (its own children get no
  such signal).

Its output goes, line by line, through `ComfyLogs` (see `node/comfy_logs.py`).
"""

from __future__ import annotations

import asyncio
import codecs
import contextlib
import os
import shlex
import signal
import socket
from collections import deque
from collections.abc import Callable

import structlog

from comfyfleet.children import die_with_parent
from comfyfleet.clock import SYSTEM_CLOCK, Clock
from comfyfleet.comfy import ComfyClient
from comfyfleet.errors import ComfyError, ConfigError
from comfyfleet.logs.redact import redact
from comfyfleet.models.node import ComfyProcess
from comfyfleet.models.retry import Backoff
from comfyfleet.node.comfy_lines import ComfyLine
from comfyfleet.node.comfy_stream import LineFeed, Sink
from comfyfleet.node.state import NodeStatus
from comfyfleet.tasks import Pacer, stop

log = structlog.get_logger(__name__)

HOST = "127.0.0.1"
# A life that stayed up this long (s) resets the restart backoff.
STABLE_S = 30.0
READY_POLL_S = 0.25
WATCH_TICK_S = 0.5
READ_BYTES = 64 * 1024
LAST_LINES = 10
PIPE_DRAIN_S = 2.0
LAST_LINE_CHARS = 2000
# This fleet's credentials and addresses, which ComfyUI (and every custom node it loads)
# has no use for. The rest of the environment (CUDA_VISIBLE_DEVICES, HF_HOME...) passes.
SECRET_ENV = frozenset({
    "API_USERNAME", "API_PASSWORD", "REDIS_URL", "REDIS_PASSWORD", "REDIS_HOST", "REDIS_PORT",
    "REDIS_DB", "LOGDY_ADDR", "BALANCER_WEBHOOK_SECRET", "BALANCER_WEBHOOK_URL",
    "COMFYFLEET_API_KEY", "COMFY_CMD",
    # The object store's keys (--store-url s3://): write access to every output and input.
    "COMFYFLEET_STORE_URL", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN",
})  # fmt: skip


def build_argv(command: str, port: int, host: str = HOST) -> list[str]:
    """The command line to run: `{port}`/`{host}` filled in, or `--listen/--port` added."""
    try:
        argv = shlex.split(command)
    except ValueError as exc:
        raise ConfigError(f"--comfy-cmd cannot be split into arguments: {exc}") from None
    if not argv:
        raise ConfigError("--comfy-cmd is empty")
    if any("{port}" in arg for arg in argv):
        return [arg.replace("{port}", str(port)).replace("{host}", host) for arg in argv]
    return [*argv, "--listen", host, "--port", str(port)]


def _child_env() -> dict[str, str]:
    # Not configuration: the child's environment is the node's, less this fleet's secrets.
    return {k: v for k, v in os.environ.items() if k not in SECRET_ENV}


def port_is_free(port: int, host: str = HOST) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def describe_exit(code: int) -> str:
    if code < 0:
        with contextlib.suppress(ValueError):
            return f"killed by {signal.Signals(-code).name}"
        return f"killed by signal {-code}"
    return f"exit code {code}"


class ComfySupervisor:
    """Runs one ComfyUI as a child of the node. Durations in seconds."""

    def __init__(
        self,
        *,
        command: str,
        port: int,
        comfy: ComfyClient,
        status: NodeStatus,
        sink: Sink,
        on_health: Callable[[bool], None],
        cwd: str | None = None,
        start_timeout_s: float = 300.0,
        stop_grace_s: float = 10.0,
        backoff_s: tuple[float, float] = (1.0, 60.0),
        hang_s: float = 120.0,
        clock: Clock = SYSTEM_CLOCK,
    ) -> None:
        self.argv = build_argv(command, port)
        self.port = port
        self.comfy = comfy
        self.status = status
        self.cwd = cwd
        self.start_timeout_s = start_timeout_s
        self.stop_grace_s = stop_grace_s
        first_s, cap_s = backoff_s
        self.backoff = Backoff(base_ms=round(first_s * 1000), cap_ms=round(cap_s * 1000),
                               jitter=False)  # fmt: skip
        self.hang_s = hang_s
        self.clock = clock
        self.info = status.process = ComfyProcess(port=port)
        self.proc: asyncio.subprocess.Process | None = None
        self._sink = sink
        self._on_health = on_health
        self._recent: deque[str] = deque(maxlen=LAST_LINES)
        self._restart = asyncio.Event()
        self._restart_reason = ""
        self._pumps: list[asyncio.Task[None]] = []

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}"

    def restart(self, reason: str) -> None:
        """Stop the running ComfyUI and start it again (e.g. it hung)."""
        self._restart_reason = reason
        self._restart.set()

    def restart_hung(self, prompt_id: str) -> None:
        """The hang watchdog found it stuck on `prompt_id`: only a restart unsticks it."""
        self.restart(f"hung on prompt {prompt_id}")

    def _take(self, line: ComfyLine) -> None:
        self._recent.append(redact(line.text)[-LAST_LINE_CHARS:])
        self._sink(line)

    async def run(self) -> None:
        """Start, watch and restart ComfyUI until cancelled; then call `stop()`."""
        pacer = Pacer(self.backoff)
        while True:
            began = self.clock.monotonic()
            ended = await self._life()
            if self.clock.monotonic() - began >= STABLE_S:
                pacer.reset()
            delay = pacer.delay_s
            self._set(state="backoff", last_exit=ended, last_lines=list(self._recent),
                      next_start_ms=self.clock.now_ms() + int(delay * 1000))  # fmt: skip
            log.warning("comfy_process_ended", reason=ended, restart_in_s=delay,
                        last_lines=list(self._recent)[-3:])  # fmt: skip
            await pacer.sleep()

    async def stop(self) -> None:
        """Stop ComfyUI for good (after `run` was cancelled): SIGTERM to its process group,
        SIGKILL after the grace."""
        await self._terminate()
        self._set(state="stopped", pid=None, next_start_ms=None)

    async def _life(self) -> str:
        """One life of the child, from start to its end; returns why it ended."""
        if not port_is_free(self.port):
            self._recent.append(f"port {self.port} is taken by another process")
            return "port taken"
        self._restart.clear()
        try:
            await self._spawn()
        except OSError as exc:
            self._recent.append(f"cannot start {shlex.join(self.argv)}: {exc}")
            return "failed to start"
        try:
            ready = await self._wait_ready()
            if ready is not None:
                return ready
            self._set(state="running")
            self._on_health(True)
            log.info("comfy_process_running", pid=self.info.pid, port=self.port)
            return await self._watch()
        finally:
            self._on_health(False)
            await self._terminate()

    async def _spawn(self) -> None:
        self._recent.clear()
        self.proc = await asyncio.create_subprocess_exec(
            *self.argv, cwd=self.cwd, env=_child_env(), stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
            start_new_session=True, preexec_fn=die_with_parent(),
        )  # fmt: skip
        assert self.proc.stdout is not None
        assert self.proc.stderr is not None
        self._pumps = [
            asyncio.create_task(self._pump(self.proc.stdout, "stdout"), name="comfy-stdout"),
            asyncio.create_task(self._pump(self.proc.stderr, "stderr"), name="comfy-stderr"),
        ]
        starts = self.info.starts + 1
        self._set(state="starting", pid=self.proc.pid, starts=starts, restarts=starts - 1,
                  next_start_ms=None)  # fmt: skip
        log.info("comfy_process_started", pid=self.proc.pid, argv=redact(shlex.join(self.argv)),
                 cwd=self.cwd)  # fmt: skip

    async def _pump(self, stream: asyncio.StreamReader, name: str) -> None:
        feed = LineFeed(name, self._take, self.clock)
        decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        try:
            while chunk := await stream.read(READ_BYTES):
                feed.feed(decoder.decode(chunk))
            feed.feed(decoder.decode(b"", final=True))
        finally:
            feed.close()

    async def _wait_ready(self) -> str | None:
        """None once ComfyUI answers; else why it never did."""
        assert self.proc is not None
        deadline = self.clock.monotonic() + self.start_timeout_s
        while self.proc.returncode is None:
            try:
                await self.comfy.system_stats()
                return None
            except ComfyError:
                pass
            if self.clock.monotonic() >= deadline:
                return f"did not answer within {self.start_timeout_s:.0f} s"
            if self._restart.is_set():
                return self._restart_reason
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(self.proc.wait()), READY_POLL_S)
        return describe_exit(self.proc.returncode)

    async def _watch(self) -> str:
        """Until the child exits, is asked to restart, or does not answer for `hang_s`."""
        assert self.proc is not None
        exited = asyncio.ensure_future(self.proc.wait())
        restart = asyncio.ensure_future(self._restart.wait())
        unanswered = asyncio.ensure_future(self._unanswered())
        try:
            await asyncio.wait({exited, restart, unanswered}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in (exited, restart, unanswered):
                task.cancel()
        if self.proc.returncode is not None:
            return describe_exit(self.proc.returncode)
        if unanswered.done() and not unanswered.cancelled():
            return f"did not answer for {self.hang_s:.0f} s"
        return self._restart_reason

    async def _unanswered(self) -> None:
        """Returns once ComfyUI has not answered /system_stats for `hang_s`."""
        since: float | None = None
        while True:
            await asyncio.sleep(WATCH_TICK_S)
            try:
                await self.comfy.system_stats()
                since = None
            except ComfyError:
                now = self.clock.monotonic()
                since = now if since is None else since
                if now - since >= self.hang_s:
                    return

    async def _terminate(self) -> None:
        """Stop the child's process group: SIGTERM, then SIGKILL after the grace. The child
        is forgotten only once reaped, so a cancel midway leaves it to the next call."""
        proc = self.proc
        if proc is not None:
            if proc.returncode is None:
                self._signal(proc.pid, signal.SIGTERM)
                try:
                    await asyncio.wait_for(asyncio.shield(proc.wait()), self.stop_grace_s)
                except TimeoutError:
                    log.warning("comfy_process_kill", pid=proc.pid, grace_s=self.stop_grace_s)
            self._signal(proc.pid, signal.SIGKILL)  # whatever is left of its group
            await proc.wait()
            self.proc = None
        pumps, self._pumps = self._pumps, []
        if pumps:  # the pipes end with the process: read what it wrote last
            _done, late = await asyncio.wait(pumps, timeout=PIPE_DRAIN_S)
            await stop(*late)  # a grandchild of its own session still holds a pipe

    @staticmethod
    def _signal(pid: int, sig: signal.Signals) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pid, sig)

    def _set(self, **fields: object) -> None:
        """Change what the node reports about its ComfyUI (heartbeat, /api/v1/node)."""
        self.info = self.status.process = self.info.model_copy(update=fields)
