"""`comfyfleet balancer --workers N`: one supervisor, N balancer processes on one port.

Each worker is this same command run again with `--workers 1 --reuse-port --ready-fd FD`:
it listens with SO_REUSEPORT (the kernel spreads connections across the workers) and
writes one byte to an inherited pipe once listening. Re-running the command line (rather
than forking) means a reload runs the code and workflows installed now.

- Start: the port is checked free first (a leftover balancer with SO_REUSEPORT would
  otherwise silently share it), then all N start; any that exits before it listens stops
  the start with its exit code (its own error went to the shared stderr).
- A worker that dies is started again at once, with a doubling pause (capped) while
  workers keep dying young, so a broken install does not spin.
- SIGHUP: graceful reload. A new generation of N starts and must all listen before the old
  one gets SIGTERM; if the new one fails, the old one keeps serving.
- SIGTERM / SIGINT: every worker gets SIGTERM and drains (closes its listening socket,
  finishes requests in flight, see cli/serve.py); SIGKILL after STOP_TIMEOUT_S.
- Workers run in their own process group (only the supervisor decides when they stop) and
  die with the supervisor however it dies (`children.py`).

Singletons (the reaper, the webhook dispatcher) run once per fleet whatever the number of
workers and replicas: each worker contends for their leadership lease (store/leader.py).
"""

from __future__ import annotations

import os
import select
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from types import FrameType

import structlog

from comfyfleet.children import die_with_parent
from comfyfleet.cli.fleet import check_port_free
from comfyfleet.cli.serve import SHUTDOWN_TIMEOUT_S
from comfyfleet.errors import ConfigError
from comfyfleet.redis_server import free_port

log = structlog.get_logger(__name__)

# How long a new worker may take to listen (s).
READY_TIMEOUT_S = 60.0
# A worker that gets SIGTERM is killed if it has not drained and exited by then (s).
STOP_TIMEOUT_S = SHUTDOWN_TIMEOUT_S + 10.0
# How often the supervisor looks at its workers and its signals (s).
POLL_S = 0.1
# A worker that dies within this long of its start died young (s); restarts after young
# deaths wait, doubling from the first value up to the second (s).
YOUNG_S = 5.0
RESTART_PAUSE_S = (0.5, 10.0)


@dataclass
class Worker:
    """One worker process; `generation` counts reloads."""

    process: subprocess.Popen[bytes]
    generation: int
    started: float = field(default_factory=time.monotonic)

    @property
    def pid(self) -> int:
        return self.process.pid


def worker_argv(port: int) -> list[str]:
    """This process's own command line, as one worker on `port` (later options win)."""
    return [*sys.orig_argv, "--workers", "1", "--port", str(port), "--reuse-port"]


class Supervisor:
    def __init__(self, argv: list[str], count: int, *, host: str, port: int) -> None:
        self.argv = argv
        self.count = count
        self.host = host
        self.port = port
        self.workers: list[Worker] = []
        self.retiring: list[Worker] = []
        self.generation = 0
        self.stop_requested = False
        self.reload_requested = False
        self.restart_pause_s = RESTART_PAUSE_S[0]
        self.next_restart = 0.0

    # -- starting ----------------------------------------------------------------------

    def _spawn(self) -> tuple[Worker, int]:
        """Start one worker; (it, the read end of its ready pipe)."""
        read_fd, write_fd = os.pipe()
        try:
            process = subprocess.Popen(
                [*self.argv, "--ready-fd", str(write_fd)], pass_fds=(write_fd,),
                stdin=subprocess.DEVNULL, process_group=0, preexec_fn=die_with_parent(),
            )  # fmt: skip
        except BaseException:
            os.close(read_fd)
            raise
        finally:
            os.close(write_fd)  # the worker holds the only write end: EOF if it dies
        return Worker(process, self.generation), read_fd

    def start_generation(self) -> list[Worker]:
        """N new workers, all listening; ConfigError (and none left running) otherwise."""
        self.generation += 1
        started: list[Worker] = []
        pipes: dict[int, Worker] = {}
        try:
            for _ in range(self.count):
                worker, read_fd = self._spawn()
                started.append(worker)
                pipes[read_fd] = worker
            self._wait_ready(pipes)
        except BaseException:
            for fd in pipes:
                os.close(fd)
            self._stop(started)
            raise
        return started

    @staticmethod
    def _wait_ready(pipes: dict[int, Worker]) -> None:
        deadline = time.monotonic() + READY_TIMEOUT_S
        waiting = dict(pipes)
        while waiting:
            left = deadline - time.monotonic()
            if left <= 0:
                pids = ", ".join(str(w.pid) for w in waiting.values())
                raise ConfigError(f"balancer workers {pids} did not listen within "
                                  f"{READY_TIMEOUT_S:.0f}s")  # fmt: skip
            readable, _, _ = select.select(list(waiting), [], [], left)
            for fd in readable:
                worker = waiting.pop(fd)
                pipes.pop(fd)
                got = os.read(fd, 1)
                os.close(fd)
                if got != b"1":
                    code = worker.process.wait()
                    raise ConfigError(f"balancer worker {worker.pid} exited before it "
                                      f"listened (code {code}); see its error above")  # fmt: skip

    # -- running -----------------------------------------------------------------------

    def _on_stop(self, signum: int, _frame: FrameType | None) -> None:
        self.stop_requested = True

    def _on_reload(self, signum: int, _frame: FrameType | None) -> None:
        self.reload_requested = True

    def run(self) -> None:
        """Start, then supervise until SIGTERM/SIGINT; ConfigError if the start fails."""
        check_port_free(self.host, self.port)
        signal.signal(signal.SIGTERM, self._on_stop)
        signal.signal(signal.SIGINT, self._on_stop)
        signal.signal(signal.SIGHUP, self._on_reload)
        try:
            self.workers = self.start_generation()
            pids = [w.pid for w in self.workers]
            log.info("balancer_workers_started", workers=pids, port=self.port)
            print(f"balancer: {self.count} workers on http://{self.host}:{self.port} "
                  f"(supervisor {os.getpid()})", file=sys.stderr, flush=True)  # fmt: skip
            while not self.stop_requested:
                if self.reload_requested:
                    self.reload_requested = False
                    self.reload()
                self.replace_dead()
                self._reap_retired()
                time.sleep(POLL_S)
        finally:
            self._stop([*self.workers, *self.retiring])
            self.workers, self.retiring = [], []

    def reload(self) -> None:
        """A new generation, listening, before the old one drains away."""
        log.info("balancer_reload", generation=self.generation + 1)
        try:
            fresh = self.start_generation()
        except ConfigError as exc:
            log.error(
                "balancer_reload_failed", error=exc.detail, kept=[w.pid for w in self.workers]
            )
            return
        old, self.workers = self.workers, fresh
        for worker in old:
            self._signal(worker, signal.SIGTERM)
        self.retiring += old
        log.info("balancer_reloaded", workers=[w.pid for w in fresh],
                 draining=[w.pid for w in old])  # fmt: skip

    def replace_dead(self) -> None:
        """Start a worker in place of each that exited (pausing while they die young)."""
        now = time.monotonic()
        for index, worker in enumerate(self.workers):
            code = worker.process.poll()
            if code is None or now < self.next_restart:
                continue
            young = now - worker.started < YOUNG_S
            log.warning("balancer_worker_died", worker=worker.pid, code=code, young=young)
            if young:
                self.next_restart = now + self.restart_pause_s
                self.restart_pause_s = min(self.restart_pause_s * 2, RESTART_PAUSE_S[1])
            else:
                self.restart_pause_s = RESTART_PAUSE_S[0]
            replacement, read_fd = self._spawn()
            os.close(read_fd)  # it joins the others; no need to wait for it here
            self.workers[index] = replacement
            log.info("balancer_worker_started", worker=replacement.pid, replaces=worker.pid)

    def _reap_retired(self) -> None:
        self.retiring = [w for w in self.retiring if w.process.poll() is None]

    # -- stopping ----------------------------------------------------------------------

    @staticmethod
    def _signal(worker: Worker, sig: int) -> None:
        if worker.process.poll() is None:
            worker.process.send_signal(sig)

    def _stop(self, workers: list[Worker]) -> None:
        """SIGTERM every worker, wait for them to drain, SIGKILL what is left."""
        for worker in workers:
            self._signal(worker, signal.SIGTERM)
        deadline = time.monotonic() + STOP_TIMEOUT_S
        for worker in workers:
            try:
                worker.process.wait(timeout=max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                log.warning("balancer_worker_killed", worker=worker.pid)
                worker.process.kill()
                worker.process.wait()


def supervise(count: int, host: str, port: int) -> None:
    """Run `count` balancer workers on host:port (0: a free port) until told to stop."""
    port = port or free_port(host)
    Supervisor(worker_argv(port), count, host=host, port=port).run()
