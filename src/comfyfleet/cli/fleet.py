"""A whole fleet as local processes: Redis, ComfyUI stand-ins, nodes and a balancer.

Used by `comfyfleet up` and by the end-to-end tests, which kill and restart the same real
processes. Credentials travel to the children in their environment, never on a command line
(where `ps` would show them).

Every child runs in its own process group (a Ctrl-C in the terminal reaches only the parent,
which stops them in order) and dies with the parent however it dies (`children.py`). A
child that exits while the fleet starts is reported at once, with the end of its log.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from comfyfleet.children import die_with_parent
from comfyfleet.errors import ConfigError
from comfyfleet.redis_server import RedisServer, free_port

READY_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 15.0
# How often start-up looks at its children and their health URLs (s).
START_POLL_S = 0.05
# Lines of a child's log quoted when it exits during start-up.
LOG_TAIL_LINES = 20


@dataclass
class Proc:
    """One child process of the fleet, restartable with the same arguments."""

    name: str
    argv: list[str]
    env: dict[str, str]
    log_path: Path
    health_url: str
    process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        log = self.log_path.open("ab")
        self.process = subprocess.Popen(
            self.argv, env=self.env, stdin=subprocess.DEVNULL, stdout=log, stderr=log,
            process_group=0, preexec_fn=die_with_parent(),
        )  # fmt: skip
        log.close()

    @property
    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def stop(self, sig: int = signal.SIGTERM, timeout_s: float = STOP_TIMEOUT_S) -> None:
        proc, self.process = self.process, None
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(sig)
        try:
            proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()

    def kill(self) -> None:
        self.stop(signal.SIGKILL)

    def restart(self) -> None:
        self.stop()
        self.start()

    def wait_healthy(self, timeout_s: float = READY_TIMEOUT_S) -> None:
        wait_http_ok(self.health_url, timeout_s, self)

    def check_alive(self) -> None:
        """ConfigError quoting the end of the log when the process has exited."""
        if self.alive:
            return
        lines = self.log_path.read_text(errors="replace").splitlines()[-LOG_TAIL_LINES:]
        code = self.process.returncode if self.process is not None else None
        tail = "\n".join(f"  {line}" for line in lines)
        raise ConfigError(f"{self.name} exited during start-up (code {code}); "
                          f"the end of {self.log_path}:\n{tail}")  # fmt: skip


def _answers_ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as resp:
            return bool(resp.status == 200)
    except (urllib.error.URLError, OSError):
        return False


def wait_http_ok(
    url: str, timeout_s: float, proc: Proc | None = None, *, watch: list[Proc] | None = None
) -> None:
    """Poll `url` until it answers 200. ConfigError as soon as `proc` or any of `watch`
    exits (quoting its log), or after `timeout_s` (s)."""
    watched = [*([proc] if proc is not None else []), *(watch or [])]
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        for child in watched:
            child.check_alive()
        if _answers_ok(url):
            return
        time.sleep(START_POLL_S)
    raise ConfigError(f"{url} did not answer 200 within {timeout_s:.0f}s")


def wait_all_healthy(procs: list[Proc], timeout_s: float = READY_TIMEOUT_S) -> None:
    """Until every one of `procs` answers its health URL; ConfigError as soon as any of
    them exits (quoting its log), or naming the silent ones after `timeout_s` (s)."""
    waiting = list(procs)
    deadline = time.monotonic() + timeout_s
    while waiting:
        for proc in procs:
            proc.check_alive()
        waiting = [proc for proc in waiting if not _answers_ok(proc.health_url)]
        if waiting and time.monotonic() >= deadline:
            names = ", ".join(f"{p.name} ({p.health_url})" for p in waiting)
            raise ConfigError(f"no answer within {timeout_s:.0f}s from {names}")
        if waiting:
            time.sleep(START_POLL_S)


def check_port_free(host: str, port: int) -> None:
    """ConfigError when something already listens on host:port (e.g. a fleet left over)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError as exc:
            raise ConfigError(
                f"port {port} on {host} is in use ({exc.strerror}); is another fleet still "
                "running? Stop it or choose other ports (--port, --node-port)."
            ) from None


@dataclass
class FleetSpec:
    nodes: int = 2
    host: str = "127.0.0.1"
    balancer_port: int = 7999
    first_node_port: int = 8101
    comfy_urls: list[str] = field(default_factory=list)
    # Each node runs its own ComfyUI with this command (no stand-ins are started).
    comfy_cmd: str | None = None
    redis_url: str | None = None
    namespace: str = "comfyfleet"
    username: str | None = None
    password: str | None = None
    node_ms: float = 20.0
    step_ms: float = 10.0
    prefetch: int = 1
    data_dir: Path | None = None
    extra_env: dict[str, str] = field(default_factory=dict)
    # Extra command-line options for every node / the balancer (e.g. "--hang-timeout", "3").
    node_args: list[str] = field(default_factory=list)
    balancer_args: list[str] = field(default_factory=list)
    # Extra options for each stand-in by index (e.g. [["--models", "checkpoints=a.ckpt"]]),
    # so one fleet has stand-ins with different node classes and model files.
    sim_args: list[list[str]] = field(default_factory=list)
    # How long start() waits for every process to answer (s).
    ready_timeout_s: float = READY_TIMEOUT_S


class Fleet:
    """Starts and stops the processes of a FleetSpec. Ports 0 mean "pick free ones"."""

    def __init__(self, spec: FleetSpec) -> None:
        self.spec = spec
        self.dir = spec.data_dir or Path(tempfile.mkdtemp(prefix="comfyfleet-"))
        self.dir.mkdir(parents=True, exist_ok=True)
        self.redis: RedisServer | None = None
        self.redis_url = spec.redis_url or ""
        self.sims: list[Proc] = []
        self.nodes: list[Proc] = []
        self.balancer: Proc | None = None

    def _env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("API_", "REDIS_"))}
        env.update(self.spec.extra_env)
        env["REDIS_URL"] = self.redis_url
        env["COMFYFLEET_NAMESPACE"] = self.spec.namespace
        if self.spec.username and self.spec.password:
            env["API_USERNAME"] = self.spec.username
            env["API_PASSWORD"] = self.spec.password
        return env

    def _proc(self, name: str, args: list[str], port: int, health: str) -> Proc:
        return Proc(
            name=name,
            argv=[sys.executable, "-m", "comfyfleet", *args],
            env=self._env(),
            log_path=self.dir / f"{name}.log",
            health_url=f"http://{self.spec.host}:{port}{health}",
        )

    def _port(self, wanted: int, offset: int = 0) -> int:
        if not wanted:
            return free_port(self.spec.host)
        check_port_free(self.spec.host, wanted + offset)
        return wanted + offset

    def start(self) -> None:
        spec = self.spec
        if not self.redis_url:
            self.redis = RedisServer(data_dir=self.dir / "redis")
            self.redis.start()
            self.redis_url = self.redis.url
        comfy_urls = list(spec.comfy_urls)
        without_sims = spec.comfy_urls or spec.comfy_cmd
        for i in range(spec.nodes - len(comfy_urls) if not without_sims else 0):
            port = free_port(spec.host)
            sim = self._proc(
                f"sim-{i + 1}",
                [
                    "sim",
                    "--host",
                    spec.host,
                    "--port",
                    str(port),
                    "--node-ms",
                    str(spec.node_ms),
                    "--step-ms",
                    str(spec.step_ms),
                    "--data-dir",
                    str(self.dir / f"sim-{i + 1}"),
                    *(spec.sim_args[i] if i < len(spec.sim_args) else []),
                ],
                port,
                "/system_stats",
            )
            self.sims.append(sim)
            comfy_urls.append(f"http://{spec.host}:{port}")
        comfy_args = [["--comfy-url", url] for url in comfy_urls]
        if spec.comfy_cmd and not comfy_args:
            comfy_args = [["--comfy-cmd", spec.comfy_cmd]] * spec.nodes
        for i, comfy_arg in enumerate(comfy_args):
            port = self._port(spec.first_node_port, i)
            self.nodes.append(
                self._proc(
                    f"node-{i + 1}",
                    [
                        "node",
                        "--host",
                        spec.host,
                        "--port",
                        str(port),
                        *comfy_arg,
                        "--node-id",
                        f"node-{i + 1}",
                        "--prefetch",
                        str(spec.prefetch),
                        *spec.node_args,
                    ],
                    port,
                    "/healthz",
                )
            )
        port = self._port(spec.balancer_port)
        self.balancer = self._proc(
            "balancer",
            [
                "balancer",
                "--host",
                spec.host,
                "--port",
                str(port),
                "--workers",
                "1",
                *spec.balancer_args,
            ],
            port,
            "/healthz",
        )
        for proc in self.procs:
            proc.start()
        wait_all_healthy(self.procs, spec.ready_timeout_s)

    @property
    def procs(self) -> list[Proc]:
        """Every child process but Redis, in start order."""
        return [*self.sims, *self.nodes, *([self.balancer] if self.balancer else [])]

    @property
    def balancer_url(self) -> str:
        assert self.balancer is not None
        return self.balancer.health_url.removesuffix("/healthz")

    def node_url(self, index: int) -> str:
        return self.nodes[index].health_url.removesuffix("/healthz")

    def sim_url(self, index: int) -> str:
        """The base URL of the stand-in behind node `index` (its /sim/faults lives there)."""
        return self.sims[index].health_url.removesuffix("/system_stats")

    def wait_ready(self, timeout_s: float = READY_TIMEOUT_S) -> None:
        """Until the balancer says a node can take jobs."""
        wait_http_ok(f"{self.balancer_url}/readyz", timeout_s, watch=self.procs)

    def __enter__(self) -> Fleet:
        """Started and ready (see `wait_ready`); stopped on leaving, whatever happened."""
        try:
            self.start()
            self.wait_ready()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stop(self) -> None:
        """Balancer first (no new jobs), then nodes (they drain), then stand-ins, then Redis."""
        procs = [p for p in [self.balancer, *self.nodes, *self.sims] if p is not None]
        for proc in procs:
            if proc.process is not None and proc.process.poll() is None:
                proc.process.send_signal(signal.SIGTERM)
        for proc in procs:
            proc.stop()
        if self.redis is not None:
            self.redis.stop()
