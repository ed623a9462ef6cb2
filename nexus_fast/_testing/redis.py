"""Throwaway redis-server nodes and a Redis Cluster on free ports, for tests that kill and restart them.

``RedisNode`` runs one ``redis-server`` (no persistence, its own temp dir) that can be killed (SIGKILL) and
restarted on the same port. ``RedisNodes(n)`` is N standalone nodes; ``RedisCluster()`` is 3 masters + 3 replicas
made with ``redis-cli --cluster create --cluster-replicas 1 --cluster-yes``. Every one is a context manager and
also registers an ``atexit`` stop, so nothing outlives the test process even when a test fails.
"""

from __future__ import annotations

import atexit
import os
import shutil
import signal
import subprocess
import tempfile
import time

from nexus_fast._testing.ports import free_port, wait_for_port, wait_for_port_closed

REDIS_SERVER = shutil.which("redis-server") or "/usr/bin/redis-server"
REDIS_CLI = shutil.which("redis-cli") or "/usr/bin/redis-cli"
NUTCRACKER = shutil.which("nutcracker") or "/usr/sbin/nutcracker"


def _cluster_port() -> int:
    """A free port whose cluster bus port (port + 10000) is also valid and free."""
    import socket

    for _ in range(200):
        port = free_port()
        if port + 10000 > 65535:
            continue
        with socket.socket() as probe:
            try:
                probe.bind(("127.0.0.1", port + 10000))
            except OSError:
                continue
        return port
    raise RuntimeError("no free port pair for a cluster node")


class RedisNode:
    def __init__(self, port: int | None = None, cluster: bool = False, password: str | None = None) -> None:
        self.host = "127.0.0.1"
        self.port = port or (_cluster_port() if cluster else free_port())
        self.cluster = cluster
        self.password = password
        self.dir = tempfile.mkdtemp(prefix=f"nexus-redis-{self.port}-")
        self.process: subprocess.Popen | None = None
        atexit.register(self.stop)

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    def start(self) -> RedisNode:
        args = [REDIS_SERVER, "--port", str(self.port), "--bind", self.host, "--save", "", "--appendonly", "no",
                "--dir", self.dir, "--daemonize", "no", "--protected-mode", "no", "--loglevel", "warning",
                "--logfile", os.path.join(self.dir, "redis.log")]
        if self.cluster:
            args += ["--cluster-enabled", "yes", "--cluster-config-file", os.path.join(self.dir, "nodes.conf"),
                     "--cluster-node-timeout", "2000"]
        if self.password:
            args += ["--requirepass", self.password, "--masterauth", self.password]
        self.process = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_for_port(self.host, self.port, timeout=10)
        return self

    def kill(self) -> None:
        """SIGKILL, as a crash: no goodbye to connected clients."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(timeout=10)
        self.process = None
        wait_for_port_closed(self.host, self.port, timeout=10)

    def restart(self) -> None:
        self.kill()
        self.start()

    def stop(self) -> None:
        if self.process is not None:
            if self.process.poll() is None:
                self.process.terminate()
                try:
                    self.process.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    self.process.kill()
                    self.process.wait(timeout=10)
            self.process = None
        shutil.rmtree(self.dir, ignore_errors=True)

    def cli(self, *args: str) -> str:
        base = [REDIS_CLI, "-h", self.host, "-p", str(self.port)]
        if self.password:
            base += ["--no-auth-warning", "-a", self.password]
        return subprocess.run(base + list(args), capture_output=True, text=True, timeout=30, check=True).stdout

    def __enter__(self) -> RedisNode:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


class RedisNodes:
    """N standalone nodes."""

    def __init__(self, count: int = 3, password: str | None = None) -> None:
        self.nodes = [RedisNode(password=password) for _ in range(count)]

    def start(self) -> RedisNodes:
        try:
            for node in self.nodes:
                node.start()
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        for node in self.nodes:
            node.stop()

    def __getitem__(self, index: int) -> RedisNode:
        return self.nodes[index]

    def __len__(self) -> int:
        return len(self.nodes)

    def servers(self, weight: int = 1) -> list[str]:
        """twemproxy-style server lines."""
        return [f"{n.address}:{weight}" for n in self.nodes]

    def __enter__(self) -> RedisNodes:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


class RedisCluster:
    """3 masters + 3 replicas (``--cluster-replicas 1``), all slots covered."""

    def __init__(self, masters: int = 3, replicas: int = 1) -> None:
        self.nodes = [RedisNode(cluster=True) for _ in range(masters * (1 + replicas))]
        self.replicas = replicas

    def start(self) -> RedisCluster:
        try:
            for node in self.nodes:
                node.start()
            subprocess.run([REDIS_CLI, "--cluster", "create", *[n.address for n in self.nodes],
                            "--cluster-replicas", str(self.replicas), "--cluster-yes"],
                           capture_output=True, text=True, timeout=60, check=True)
            self.wait_ok()
        except BaseException:
            self.stop()
            raise
        return self

    def wait_ok(self, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            live = [n for n in self.nodes if n.process is not None]
            states = [n.cli("cluster", "info") for n in live]
            # replicas appear in CLUSTER SLOTS only once their initial sync is done
            listed = [n.cli("cluster", "slots").count(n.host) for n in live]
            if all("cluster_state:ok" in s for s in states) and all(c >= len(self.nodes) for c in listed):
                return
            time.sleep(0.2)
        raise TimeoutError("Redis Cluster did not reach cluster_state:ok")

    def stop(self) -> None:
        for node in self.nodes:
            node.stop()

    def seeds(self) -> list[str]:
        return [f"{n.address}:1" for n in self.nodes[:3]]

    def __enter__(self) -> RedisCluster:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
