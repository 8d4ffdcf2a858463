"""Loopback port allocation for the processes the harness starts."""

from __future__ import annotations

import socket
import threading

_lock = threading.Lock()
# Ports handed out by this process. The kernel may offer a just-closed port again
# before the process it was meant for has bound it, so never hand one out twice.
_handed_out: set[int] = set()


def free_port(host: str = "127.0.0.1") -> int:
    """Return a TCP port on ``host`` that is unbound now and unique to this test run.

    The port is released before returning, so another program could take it in the
    meantime; the kernel picks ephemeral ports in a rotating order, which makes that
    rare enough for tests.
    """
    with _lock:
        for _ in range(100):
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
                sock.bind((host, 0))
                port: int = sock.getsockname()[1]
            if port not in _handed_out:
                _handed_out.add(port)
                return port
    raise RuntimeError(f"could not find a free port on {host}")


def free_ports(count: int, host: str = "127.0.0.1") -> list[int]:
    return [free_port(host) for _ in range(count)]
