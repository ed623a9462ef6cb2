"""The targets of a run, each started by the harness on free ports with equivalent settings.

=============  ===========================================================================================
target         what it is
=============  ===========================================================================================
direct         the machine's PostgreSQL and Redis themselves (for the ring scenarios: one ring node)
haproxy        HAProxy in TCP mode, one thread, in front of PostgreSQL and of Redis: the relay floor
pgbouncer      PgBouncer, transaction pooling, ``default_pool_size`` = the pool size of the run
twemproxy      nutcracker over the single Redis, and a second one over the 3-node ring (ketama, fnv1a_64)
nexus-1w       ``nexus-fast serve --workers 1``: PostgreSQL (transaction pooling) and both Redis pools
nexus-2w       the same with ``--workers 2``
=============  ===========================================================================================

Equivalent settings: every pooling proxy may open the same number of PostgreSQL server connections in total
(``pool_size``, 20 by default; nexus-fast's pools are per worker process, so with two workers each gets half),
and every Redis proxy keeps one server connection per node per process (twemproxy's ``server_connections: 1``).

A target that cannot be started (its program missing, its config refused, it exits or never answers) is not
fatal: it is recorded with the reason and every scenario reports it as skipped.
"""

from __future__ import annotations

import contextlib
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from bench.idle import LoginError
from bench.tools import ToolStatus
from nexus_fast._testing import peers
from nexus_fast._testing.ports import free_port

Address = tuple[str, int]

TARGET_NAMES = ("direct", "haproxy", "pgbouncer", "twemproxy", "nexus-1w", "nexus-2w")
# Which endpoints ("postgres", "redis", "ring") each target can serve.
TARGET_ENDPOINTS: dict[str, tuple[str, ...]] = {
    "direct": ("postgres", "redis", "ring"),
    "haproxy": ("postgres", "redis"),
    "pgbouncer": ("postgres",),
    "twemproxy": ("redis", "ring"),
    "nexus-1w": ("postgres", "redis", "ring"),
    "nexus-2w": ("postgres", "redis", "ring"),
}
TARGET_LABELS = {
    "direct": "direct",
    "haproxy": "HAProxy (TCP)",
    "pgbouncer": "PgBouncer",
    "twemproxy": "twemproxy",
    "nexus-1w": "nexus-fast 1 worker",
    "nexus-2w": "nexus-fast 2 workers",
}


@dataclass
class Endpoint:
    """Where a target serves one protocol, and the process whose CPU and memory are its cost (None: not ours)."""

    address: Address
    pid: int | None
    note: str = ""
    # The backend servers behind it that the harness started (their CPU per request is reported too).
    server_pids: list[int] = field(default_factory=list)


@dataclass
class Target:
    name: str
    endpoints: dict[str, Endpoint] = field(default_factory=dict)
    # endpoint -> why this target does not serve it in this run
    skipped: dict[str, str] = field(default_factory=dict)
    settings: dict[str, Any] = field(default_factory=dict)

    @property
    def label(self) -> str:
        return TARGET_LABELS.get(self.name, self.name)


@dataclass
class TargetOptions:
    postgres: Address
    # None: the harness starts a dedicated redis-server, so redis-benchmark's 100,000 keys never land in a
    # Redis that other work shares.
    redis: Address | None
    database: str
    pool_size: int = 20
    ring_nodes: int = 3
    max_client_conn: int = 20000
    ready_timeout: float = 30.0
    postgres_pid: int | None = None  # the postmaster, when the harness started PostgreSQL


def nexus_config(options: TargetOptions, *, workers: int, postgres_listen: Address | None,
                 redis_listen: Address | None, redis_server: Address | None,
                 ring_listen: Address | None, ring_servers: list[Address]) -> dict[str, Any]:
    """The nexus.toml (as a dict) of a nexus-fast target: settings equivalent to the peers'.

    Validated against the real schema (``NexusConfig``) before use, so a schema change shows up as a clear
    skip reason rather than a proxy that exits.
    """
    per_worker_pool = max(1, options.pool_size // workers)
    pools: dict[str, Any] = {}
    if redis_listen is not None and redis_server is not None:
        pools["single"] = {"listen": f"{redis_listen[0]}:{redis_listen[1]}",
                           "servers": [f"{redis_server[0]}:{redis_server[1]}:1"],
                           "server_connections": 1, "preconnect": True, "timeout": "5s"}
    if ring_listen is not None and ring_servers:
        pools["ring"] = {"listen": f"{ring_listen[0]}:{ring_listen[1]}",
                         "servers": [f"{host}:{port}:1" for host, port in ring_servers],
                         "hash": "fnv1a_64", "distribution": "ketama",
                         "server_connections": 1, "preconnect": True, "timeout": "5s"}
    config: dict[str, Any] = {"server": {"workers": workers, "log_level": "warning"}}
    if postgres_listen is not None:
        config["postgres"] = {
            "listen": f"{postgres_listen[0]}:{postgres_listen[1]}",
            "auth_type": "trust",
            "pool_mode": "transaction",
            "default_pool_size": per_worker_pool,
            "max_client_conn": options.max_client_conn,
            "databases": {"*": {"servers": [{"host": options.postgres[0], "port": options.postgres[1]}]}},
        }
    if pools:
        config["redis"] = {"pools": pools}
    return config


def check_postgres(address: Address, database: str, timeout: float = 10.0) -> str | None:
    """None when ``SELECT 1`` works through ``address``, else the reason."""
    try:
        done = subprocess.run(["psql", "-h", address[0], "-p", str(address[1]), "-U", "postgres", "-d", database,
                               "-Atc", "SELECT 1"], capture_output=True, text=True, timeout=timeout)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"SELECT 1 through {address[0]}:{address[1]} failed: {exc}"
    if done.returncode != 0 or done.stdout.strip() != "1":
        return f"SELECT 1 through {address[0]}:{address[1]} failed: {(done.stderr or done.stdout).strip()[-300:]}"
    return None


def check_redis(address: Address) -> str | None:
    """None when PING answers PONG through ``address``, else the reason."""
    try:
        reply = peers.redis_ping(address)
    except (OSError, LoginError) as exc:
        return f"PING through {address[0]}:{address[1]} failed: {exc}"
    return None if reply == "+PONG" else f"PING through {address[0]}:{address[1]} answered {reply!r}"


class TargetSet:
    """Starts the requested targets and stops everything it started (``with TargetSet(...) as targets``)."""

    def __init__(self, names: list[str], options: TargetOptions, tools: dict[str, ToolStatus],
                 endpoints: set[str], log: Callable[[str], None] = lambda _m: None) -> None:
        self.names = names
        self.options = options
        self.tools = tools
        self.endpoints = endpoints
        self.log = log
        self.targets: dict[str, Target] = {}
        self.ring_servers: list[Address] = []
        self.ring_error = "the ring's Redis nodes were not started"
        self._redis: Address | None = None
        self._redis_pid: int | None = None
        self.ring_pids: list[int] = []
        self._stack = contextlib.ExitStack()

    # -- lifecycle ------------------------------------------------------------------------------------------

    def __enter__(self) -> TargetSet:
        try:
            self.start()
        except BaseException:
            self._stack.close()
            raise
        return self

    def __exit__(self, *_exc: object) -> None:
        self._stack.close()

    @property
    def redis_address(self) -> Address:
        assert self._redis is not None, "TargetSet.start() resolves the Redis address"
        return self._redis

    def start(self) -> None:
        self._redis = self.options.redis
        if "redis" in self.endpoints and self._redis is None:
            if not self.tools["redis-server"].available:
                raise RuntimeError(self.tools["redis-server"].missing_reason)
            node = self._stack.enter_context(peers.start_redis_server())
            self._redis = node.address
            self._redis_pid = node.pid
            self.log(f"started a dedicated redis-server on {node.host}:{node.port}")
        if "ring" in self.endpoints:
            self._start_ring_nodes()
        for name in self.names:
            target = Target(name)
            self.targets[name] = target
            wanted = [endpoint for endpoint in TARGET_ENDPOINTS[name] if endpoint in self.endpoints]
            if not wanted:
                continue
            self.log(f"starting {target.label} ({', '.join(wanted)})")
            starters: dict[str, Callable[[Target, list[str]], None]] = {
                "direct": self._start_direct, "haproxy": self._start_haproxy, "pgbouncer": self._start_pgbouncer,
                "twemproxy": self._start_twemproxy, "nexus-1w": self._start_nexus, "nexus-2w": self._start_nexus,
            }
            starters[name](target, wanted)
            for endpoint_name, endpoint in target.endpoints.items():
                endpoint.server_pids = self._server_pids(name, endpoint_name)
            for endpoint, reason in target.skipped.items():
                self.log(f"  {target.label} {endpoint}: skipped: {reason}")

    # -- the ring's nodes -----------------------------------------------------------------------------------

    def _start_ring_nodes(self) -> None:
        if not self.tools["redis-server"].available:
            self.ring_error = self.tools["redis-server"].missing_reason
            return
        # The Redis plane's own test harness (nexus_fast._testing.redis) starts the nodes: the same non-persistent
        # redis-server nodes its ring tests use.
        from nexus_fast._testing.redis import RedisNodes

        try:
            nodes = self._stack.enter_context(RedisNodes(self.options.ring_nodes))
        except (OSError, RuntimeError, subprocess.SubprocessError) as exc:
            self.ring_error = f"the ring's Redis nodes did not start: {exc}"
            return
        self.ring_servers = [(node.host, node.port) for node in nodes.nodes]
        self.ring_pids = [node.process.pid for node in nodes.nodes if node.process is not None]

    def _server_pids(self, target: str, endpoint: str) -> list[int]:
        if endpoint == "postgres":
            return [self.options.postgres_pid] if self.options.postgres_pid else []
        if endpoint == "redis":
            return [self._redis_pid] if self._redis_pid else []
        # direct goes to one ring node; the proxies spread over all of them.
        return self.ring_pids[:1] if target == "direct" else list(self.ring_pids)

    def _ring_unavailable(self) -> str | None:
        return None if self.ring_servers else self.ring_error

    # -- each target ----------------------------------------------------------------------------------------

    def _start_direct(self, target: Target, wanted: list[str]) -> None:
        if "postgres" in wanted:
            target.endpoints["postgres"] = Endpoint(self.options.postgres, None)
        if "redis" in wanted:
            target.endpoints["redis"] = Endpoint(self.redis_address, None)
        if "ring" in wanted:
            reason = self._ring_unavailable()
            if reason:
                target.skipped["ring"] = reason
            else:
                target.endpoints["ring"] = Endpoint(self.ring_servers[0], None, "one of the ring's nodes")

    def _peer(self, target: Target, endpoint: str, tool: str, start: Callable[[], peers.PeerProcess],
              check: Callable[[Address], str | None]) -> None:
        status = self.tools[tool]
        if not status.available:
            target.skipped[endpoint] = status.missing_reason
            return
        try:
            process = self._stack.enter_context(start())
        except peers.PeerStartError as exc:
            target.skipped[endpoint] = str(exc)
            return
        problem = check(process.address)
        if problem:
            target.skipped[endpoint] = f"{tool} started but does not answer: {problem}; log: {process.log_tail(5)}"
            return
        target.endpoints[endpoint] = Endpoint(process.address, process.pid)

    def _start_haproxy(self, target: Target, wanted: list[str]) -> None:
        target.settings = {"mode": "tcp", "nbthread": 1}
        if "postgres" in wanted:
            self._peer(target, "postgres", "haproxy", lambda: peers.start_haproxy(self.options.postgres),
                       lambda address: check_postgres(address, self.options.database))
        if "redis" in wanted:
            self._peer(target, "redis", "haproxy", lambda: peers.start_haproxy(self.redis_address), check_redis)

    def _start_pgbouncer(self, target: Target, wanted: list[str]) -> None:
        target.settings = {"pool_mode": "transaction", "default_pool_size": self.options.pool_size,
                           "max_client_conn": self.options.max_client_conn}
        self._peer(target, "postgres", "pgbouncer",
                   lambda: peers.start_pgbouncer(self.options.postgres, pool_size=self.options.pool_size,
                                                 max_client_conn=self.options.max_client_conn),
                   lambda address: check_postgres(address, self.options.database))

    def _start_twemproxy(self, target: Target, wanted: list[str]) -> None:
        target.settings = {"hash": "fnv1a_64", "distribution": "ketama", "server_connections": 1}
        if "redis" in wanted:
            self._peer(target, "redis", "nutcracker", lambda: peers.start_nutcracker([self.redis_address]),
                       check_redis)
        if "ring" in wanted:
            reason = self._ring_unavailable()
            if reason:
                target.skipped["ring"] = reason
            else:
                self._peer(target, "ring", "nutcracker", lambda: peers.start_nutcracker(self.ring_servers),
                           check_redis)

    def _start_nexus(self, target: Target, wanted: list[str]) -> None:
        workers = 2 if target.name == "nexus-2w" else 1
        try:
            from nexus_fast._testing.proxy import NexusProcess, NexusStartError
            from nexus_fast.config.schema import NexusConfig
        except ImportError as exc:
            for endpoint in wanted:
                target.skipped[endpoint] = f"nexus-fast cannot be imported: {exc}"
            return
        host = "127.0.0.1"
        listens = {"postgres": (host, free_port(host)), "redis": (host, free_port(host)),
                   "ring": (host, free_port(host))}
        ring_reason = self._ring_unavailable() if "ring" in wanted else None
        config = nexus_config(self.options, workers=workers,
                              postgres_listen=listens["postgres"] if "postgres" in wanted else None,
                              redis_listen=listens["redis"] if "redis" in wanted else None,
                              redis_server=self._redis,
                              ring_listen=listens["ring"] if "ring" in wanted and not ring_reason else None,
                              ring_servers=self.ring_servers)
        target.settings = config
        try:
            NexusConfig.model_validate(config)
        except Exception as exc:
            for endpoint in wanted:
                target.skipped[endpoint] = f"the generated nexus.toml is not valid: {exc}"
            return
        process = NexusProcess(config, workers=workers, ready_timeout=self.options.ready_timeout)
        try:
            process.start()
        except (NexusStartError, OSError) as exc:
            for endpoint in wanted:
                target.skipped[endpoint] = f"nexus-fast did not start: {str(exc)[-600:]}"
            return
        self._stack.callback(process.stop)
        # With several workers /ready may be answered before every sibling listens; give them a moment, then check
        # each protocol for real through the listener.
        time.sleep(0.5 if workers > 1 else 0.1)
        for endpoint in wanted:
            if endpoint == "ring" and ring_reason:
                target.skipped["ring"] = ring_reason
                continue
            address = listens[endpoint]
            problem = (check_postgres(address, self.options.database) if endpoint == "postgres"
                       else check_redis(address))
            if problem:
                target.skipped[endpoint] = f"nexus-fast started but does not answer: {problem}"
            else:
                target.endpoints[endpoint] = Endpoint(address, process.pid)
