"""A private Redis server for worker replication tests."""

from __future__ import annotations

import shutil
import socket
import tempfile
from pathlib import Path

from harness.ports import free_port
from harness.process import ManagedProcess, remove_dir, tail_lines


class RedisUnavailableError(RuntimeError):
    """No ``redis-server`` binary on this machine."""


def find_redis_server() -> str:
    path = shutil.which("redis-server")
    if path is None:
        raise RedisUnavailableError(
            "redis-server not found on PATH; install the 'redis-server' package"
        )
    return path


class RedisServer:
    """An in-memory Redis on a free loopback port: ``start()``, use, ``stop()``."""

    def __init__(self, base_dir: Path | None = None) -> None:
        self.binary = find_redis_server()
        self.host = "127.0.0.1"
        self.port = free_port()
        self.directory = Path(tempfile.mkdtemp(prefix="redis-", dir=base_dir))
        self._process: ManagedProcess | None = None

    def __repr__(self) -> str:
        return f"<RedisServer {self.host}:{self.port}>"

    def log_text(self) -> str:
        return self._process.output_text() if self._process is not None else ""

    def log_tails(self, lines: int = 40) -> dict[str, str]:
        return {f"redis {self.host}:{self.port}": tail_lines(self.log_text(), lines)}

    def start(self, timeout: float = 30) -> RedisServer:
        argv = [
            self.binary,
            "--bind",
            self.host,
            "--port",
            str(self.port),
            # Nothing outlives the test run: no RDB snapshots, no AOF.
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(self.directory),
            "--daemonize",
            "no",
            "--protected-mode",
            "yes",
        ]
        self._process = ManagedProcess(
            "redis", argv, cwd=self.directory, output_path=self.directory / "redis.log"
        )
        self._process.spawn()
        self._process.wait_until(self.ping, timeout)
        return self

    def ping(self) -> bool:
        """True if the server answers PING (raw RESP, to need no client library)."""
        try:
            with socket.create_connection((self.host, self.port), timeout=2) as sock:
                sock.sendall(b"PING\r\n")
                return sock.recv(64).startswith(b"+PONG")
        except OSError:
            return False

    def stop(self) -> None:
        if self._process is not None:
            self._process.stop(timeout=30)
        remove_dir(self.directory)
