"""A Redis node as the proxy sees it: its pipelined connections and its health.

Health follows twemproxy's rules (``server_failure_limit`` consecutive failures eject a node when
``auto_eject_hosts`` is on; it stays out for ``server_retry_timeout``), with one improvement: an ejected node
comes back only when a PING to it succeeds, instead of being put back blindly and failing a request first.
Failures are connection errors, request timeouts and failed active PING checks; any reply resets the count.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import TYPE_CHECKING, Any

from nexus_fast.redis.connection import Discard, Pending, ServerConnection
from nexus_fast.redis.metrics import LatencyHistogram
from nexus_fast.redis.protocol import encode_command
from nexus_fast.tasks import cancel_and_wait_all

if TYPE_CHECKING:
    from nexus_fast.redis.config import RedisPoolConfig

log = logging.getLogger("nexus_fast.redis")


def affinity(pending: Pending) -> int:
    """Which of a node's ``server_connections`` a request takes: its client's, always the same one, so a client's
    commands keep their order (Redis orders per connection). Helpers (merge, fan-out, fallback...) lead back to the
    client through ``.session``; the proxy's own requests take connection 0."""
    owner = pending.handler
    for _ in range(4):
        client_id = getattr(owner, "id", None)
        if isinstance(client_id, int):
            return client_id
        owner = getattr(owner, "session", None)
        if owner is None:
            break
    return 0


class Node:
    def __init__(self, router: Any, config: RedisPoolConfig, host: str, port: int, name: str, weight: int = 1,
                 replica: bool = False) -> None:
        self.router = router
        self.config = config
        self.host = host
        self.port = port
        self.name = name
        self.weight = weight
        self.replica = replica  # cluster replica: its connections send READONLY first
        self.address = f"{host}:{port}"
        self.conns: dict[int, list[ServerConnection | None]] = {2: [None] * config.server_connections,
                                                                3: [None] * config.server_connections}
        self.failures = 0
        self.ejected = False
        self.retry_at = 0.0
        self.last_error = ""
        self.latency_ms: float | None = None
        # plain counters on the hot path; the pool copies them into Prometheus once a second
        self.requests = 0
        self.replies = 0
        self.errors = 0
        self.error_replies = 0  # error replies the node sent (WRONGTYPE, OOM...): its answers, not its failures
        self.bytes_in = 0
        self.bytes_out = 0
        self.ejections = 0
        self.outlier_ejections = 0
        self.ejected_for_latency = False
        self.latency = LatencyHistogram()
        self._tasks: set[asyncio.Task] = set()

    def __repr__(self) -> str:
        return f"Node({self.name} {self.address}{' ejected' if self.ejected else ''})"

    # -- forwarding
    def send(self, pending: Pending, proto: int = 2, hint: int | None = None) -> None:
        conns = self.conns[proto]
        if len(conns) == 1:
            i = 0
        else:
            i = (affinity(pending) if hint is None else hint) % len(conns)
        conn = conns[i]
        if conn is None or conn.closed:
            conn = self._open(proto, i)
        self.requests += 1
        conn.send(pending)

    def connection(self, proto: int = 2, hint: int = 0) -> ServerConnection:
        conns = self.conns[proto]
        i = hint % len(conns)
        conn = conns[i]
        if conn is None or conn.closed:
            conn = self._open(proto, i)
        return conn

    def _open(self, proto: int, slot: int) -> ServerConnection:
        conn = ServerConnection(self, proto, redirects=self.router.cluster_mode)
        self.conns[proto][slot] = conn
        # Setup commands go first in the pipeline, ahead of any client request queued before the connect ends.
        config = self.config
        if config.backend_password is not None:
            args = [b"AUTH"]
            if config.backend_username:
                args.append(config.backend_username.encode())
            args.append(config.backend_password.get_secret_value().encode())
            conn.send(Pending(encode_command(args), Discard(self, "AUTH")))
        if proto == 3:
            conn.send(Pending(encode_command([b"HELLO", b"3"]), Discard(self, "HELLO 3")))
            if self.router.near is not None:
                conn.send(Pending(encode_command([b"CLIENT", b"TRACKING", b"ON"]), Discard(self, "CLIENT TRACKING")))
        if config.database and not self.router.cluster_mode:
            conn.send(Pending(encode_command([b"SELECT", str(config.database).encode()]), Discard(self, "SELECT")))
        if self.replica:
            conn.send(Pending(encode_command([b"READONLY"]), Discard(self, "READONLY")))
        task = asyncio.get_running_loop().create_task(self._connect(conn))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return conn

    async def _connect(self, conn: ServerConnection) -> None:
        loop = asyncio.get_running_loop()
        try:
            await asyncio.wait_for(loop.create_connection(lambda: conn, self.host, self.port),
                                   self.config.connect_timeout)
        except (TimeoutError, OSError) as exc:
            reason = "connect timed out" if isinstance(exc, asyncio.TimeoutError) else f"connect failed: {exc}"
            conn.abort(f"ERR nexus-fast: node {self.address} unreachable ({reason})")
            self.last_error = reason

    def forget(self, conn: ServerConnection) -> None:
        if conn.proto == 3 and self.router.near is not None:
            self.router.near.clear()  # its invalidations are lost with it: nothing cached can be trusted
        for conns in self.conns.values():
            for i, c in enumerate(conns):
                if c is conn:
                    conns[i] = None

    def setup_failed(self, what: str, message: str) -> None:
        log.error("redis node %s refused %s: %s", self.address, what, message)
        self.last_error = f"{what} refused: {message}"
        if what == "CLIENT TRACKING":
            self.router.near_cache_unavailable(f"{self.address} refused CLIENT TRACKING: {message}")

    # -- health
    def record_failure(self, reason: str) -> None:
        self.failures += 1
        self.errors += 1
        self.last_error = reason
        config = self.config
        if config.auto_eject_hosts and not self.ejected and self.failures >= config.server_failure_limit:
            log.warning("redis node %s ejected after %d failures: %s", self.address, self.failures, reason)
            self.eject()

    def eject(self, for_latency: bool = False) -> None:
        """Out of the ring until ``server_retry_timeout`` has passed and a PING succeeds."""
        self.ejected = True
        self.ejections += 1
        self.ejected_for_latency = for_latency
        if for_latency:
            self.outlier_ejections += 1
        self.retry_at = time.monotonic() + self.config.server_retry_timeout
        self.router.topology_changed()

    def record_success(self) -> None:
        self.failures = 0

    def readmit(self) -> None:
        if self.ejected:
            self.ejected = False
            self.ejected_for_latency = False
            self.failures = 0
            self.latency.reset_ewma()
            log.warning("redis node %s is back in the ring", self.address)
            self.router.topology_changed()

    @property
    def queue_depth(self) -> int:
        return sum(len(c.queue) for conns in self.conns.values() for c in conns if c is not None)

    def check_timeouts(self, now: float, timeout: float) -> None:
        for conns in self.conns.values():
            for conn in conns:
                if conn is not None and conn.queue and now - conn.last_progress > timeout:
                    conn.abort(f"ERR nexus-fast: timeout: node {self.address} did not answer within "
                               f"{round(timeout * 1000)}ms")

    async def ping(self, timeout: float) -> tuple[bool, str, float | None]:
        """A fresh connection and a PING (with backend AUTH): the active health check and the retry probe."""
        started = time.perf_counter()
        writer = None
        try:
            reader, writer = await asyncio.wait_for(asyncio.open_connection(self.host, self.port), timeout)
            payload = b""
            config = self.config
            if config.backend_password is not None:
                args = [b"AUTH"] + ([config.backend_username.encode()] if config.backend_username else [])
                payload += encode_command(args + [config.backend_password.get_secret_value().encode()])
            writer.write(payload + encode_command([b"PING"]))
            lines = 2 if config.backend_password is not None else 1
            answer = b""
            for _ in range(lines):
                answer = await asyncio.wait_for(reader.readline(), timeout)
                if answer[:1] == b"-":
                    return False, answer[1:].strip().decode(errors="replace"), None
            ok = answer.startswith(b"+PONG")
            latency = (time.perf_counter() - started) * 1000
            return ok, "" if ok else f"unexpected PING reply {answer[:40]!r}", latency
        except (TimeoutError, OSError, asyncio.IncompleteReadError) as exc:
            return False, "timeout" if isinstance(exc, asyncio.TimeoutError) else str(exc) or type(exc).__name__, None
        finally:
            if writer is not None:
                writer.close()
                try:
                    await writer.wait_closed()
                except OSError:
                    pass

    def close(self) -> None:
        for conns in self.conns.values():
            for conn in list(conns):
                if conn is not None:
                    conn.close()
        for task in list(self._tasks):
            task.cancel()

    async def wait_closed(self) -> None:
        await cancel_and_wait_all(list(self._tasks))
