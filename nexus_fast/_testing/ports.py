"""Free ports, waiting for listeners, and the machine's own PostgreSQL and Redis."""

from __future__ import annotations

import os
import socket
import time

# Ports handed out by this process. The kernel may give the same free port to two calls in a row (nothing holds
# it in between); two listeners of one config on the same port would then both bind, because every nexus-fast
# listener uses SO_REUSEPORT, and the kernel would split connections between them (an admin request answered by
# a data listener). So a port is never handed out twice by one process.
_handed_out: set[int] = set()


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port nothing listens on now (the kernel's choice) and not returned before by this process."""
    for _ in range(1000):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.bind((host, 0))
            port = int(sock.getsockname()[1])
        if port not in _handed_out:
            _handed_out.add(port)
            return port
    raise RuntimeError("no fresh free port after 1000 tries")


def port_open(host: str, port: int, timeout: float = 0.2) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def wait_for_port(host: str, port: int, timeout: float = 15.0) -> None:
    """Block until something accepts on host:port, or raise TimeoutError naming it."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if port_open(host, port):
            return
        time.sleep(0.05)
    raise TimeoutError(f"nothing listening on {host}:{port} after {timeout}s")


def wait_for_port_closed(host: str, port: int, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not port_open(host, port):
            return
        time.sleep(0.05)
    raise TimeoutError(f"{host}:{port} still accepting after {timeout}s")


def system_postgres_address() -> tuple[str, int]:
    """The machine's running PostgreSQL (PGHOST/PGPORT override the 127.0.0.1:5432 default)."""
    return os.environ.get("PGHOST", "127.0.0.1"), int(os.environ.get("PGPORT", "5432"))


def system_redis_address() -> tuple[str, int]:
    """The machine's running Redis (NEXUS_TEST_REDIS overrides the 127.0.0.1:6379 default)."""
    host, _, port = os.environ.get("NEXUS_TEST_REDIS", "127.0.0.1:6379").rpartition(":")
    return host, int(port)
