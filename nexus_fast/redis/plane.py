"""The Redis data plane: one ``RedisPool`` per ``[redis.pools.<name>]``, each with its listener, router and nodes.

``create_plane(config, metrics)`` is what the process shell calls (contract in ``nexus_fast/server/plane.py``).
A pool's background task (every 50 ms) enforces request timeouts, probes ejected nodes after
``server_retry_timeout``, runs active PING checks every ``health_check_interval``, refreshes the cluster slot map,
and copies the hot path's plain counters into Prometheus once a second (a Prometheus call per request would cost
more than the forwarding itself).
"""

from __future__ import annotations

import asyncio
import gc
import hmac
import logging
import time
from typing import Any

from nexus_fast.config.schema import NexusConfig
from nexus_fast.observe.metrics import Metrics
from nexus_fast.redis.config import RedisPoolConfig
from nexus_fast.redis.metrics import NodeLatencyCollector, RedisMetrics
from nexus_fast.redis.pool import Node
from nexus_fast.redis.router import ClusterRouter, RingRouter, Router
from nexus_fast.redis.session import ClientSession
from nexus_fast.server.plane import BackendHealth
from nexus_fast.tasks import cancel_and_wait, cancel_and_wait_all

log = logging.getLogger("nexus_fast.redis")

TICK = 0.05
OUTLIER_MIN_BATCHES = 20  # latency samples (coalesced writes) a node needs before it is judged


class RedisPool:
    def __init__(self, name: str, config: RedisPoolConfig, metrics: RedisMetrics) -> None:
        self.name = name
        self.config = config
        self.metrics = metrics
        self.router: Router = ClusterRouter(name, config) if config.mode == "cluster" else RingRouter(name, config)
        self.sessions: set[ClientSession] = set()
        self.server: asyncio.AbstractServer | None = None
        self._task: asyncio.Task | None = None
        self._probes: set[asyncio.Task] = set()
        self._client_ids = 0
        self.bytes_in = 0
        self.unsupported = 0
        self.auth_failures = 0
        self._passwords: dict[bytes, bytes] = {}
        if config.password is not None:
            self._passwords[b"default"] = config.password.get_secret_value().encode()
        for user, secret in config.users.items():
            self._passwords[user.encode()] = secret.get_secret_value().encode()
        self.auth_required = bool(self._passwords)
        self._last_health = 0.0
        self._last_metrics = 0.0
        self.address: tuple[str, int] | None = None

    # -- sessions
    def next_client_id(self) -> int:
        self._client_ids += 1
        return self._client_ids

    def check_password(self, user: bytes, password: bytes) -> bool:
        expected = self._passwords.get(user)
        return expected is not None and hmac.compare_digest(expected, password)

    def session_opened(self, session: ClientSession) -> None:
        limit = self.config.client_connections
        if limit and len(self.sessions) >= limit:
            session.reply_now(b"-ERR nexus-fast: max number of clients reached\r\n")
            session.closing = True
            self.router.flush_dirty()
            return
        self.sessions.add(session)

    def session_closed(self, session: ClientSession) -> None:
        self.sessions.discard(session)

    # -- lifecycle
    async def start(self) -> None:
        if isinstance(self.router, ClusterRouter):
            if not await self.router.refresh():
                log.warning("redis pool %s: no seed answered CLUSTER SLOTS yet; retrying in the background",
                            self.name)
        loop = asyncio.get_running_loop()
        host, port = self.config.listen_address()
        self.server = await loop.create_server(lambda: ClientSession(self), host, port, reuse_port=True,
                                               backlog=1024)
        sock = self.server.sockets[0]
        self.address = sock.getsockname()[:2]
        if self.config.preconnect:
            for node in self.router.nodes:
                for i in range(self.config.server_connections):
                    node.connection(2, i)
        self._task = loop.create_task(self._background())

    def stop_accepting(self) -> None:
        if self.server is not None:
            self.server.close()

    async def drain(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and any(s.queue for s in self.sessions):
            await asyncio.sleep(0.01)
        for session in list(self.sessions):
            if session.transport is not None:
                session.transport.close()

    async def close(self) -> None:
        self.stop_accepting()
        if self.server is not None:
            await self.server.wait_closed()
        for session in list(self.sessions):
            if session.transport is not None:
                session.transport.abort()
        await cancel_and_wait(self._task)
        await cancel_and_wait_all(list(self._probes))
        self.router.close()
        await self.router.wait_closed()
        await asyncio.sleep(0)

    # -- background
    async def _background(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(TICK)
            try:
                self._tick(loop.time())
            except Exception:  # a bug here must not stop timeouts and health checks for good
                log.exception("redis pool %s: background tick failed", self.name)

    def _tick(self, now: float) -> None:
        router = self.router
        router.tick(now)
        mono = time.monotonic()
        for node in router.nodes:
            if node.ejected and mono >= node.retry_at:
                node.retry_at = mono + self.config.server_retry_timeout
                self._probe(node, readmit=True)
        interval = self.config.health_check_interval
        if interval > 0 and mono - self._last_health >= interval:
            self._last_health = mono
            for node in router.nodes:
                if not node.ejected:
                    self._probe(node, readmit=False)
        if mono - self._last_metrics >= 1.0:
            self._last_metrics = mono
            if self.config.outlier_detection:
                self.check_outliers()
            self.metrics.collect(self)

    def check_outliers(self) -> Node | None:
        """Eject the node whose latency EWMA is far above its live peers' median (at most one out at a time).

        Envoy's outlier detection ejects on success rate and consecutive errors; for a cache, a node that answers
        but slowly (swapping, a noisy neighbour, a big KEYS) hurts every pipeline it shares, so latency is the
        signal here. Returns the ejected node, or None."""
        config = self.config
        nodes = self.router.nodes
        if any(n.ejected_for_latency for n in nodes):
            return None
        measured = [n for n in nodes if not n.ejected and n.latency.batches >= OUTLIER_MIN_BATCHES]
        if len(measured) < 3:
            return None
        for node in sorted(measured, key=lambda n: -n.latency.ewma):
            peers = sorted(p.latency.ewma for p in measured if p is not node)
            median = peers[len(peers) // 2]
            if node.latency.ewma > max(config.outlier_min_latency, config.outlier_latency_factor * median):
                log.warning("redis node %s ejected as a latency outlier: %.1f ms against a peer median of %.1f ms",
                            node.address, node.latency.ewma * 1000, median * 1000)
                node.eject(for_latency=True)
                return node
            break  # only the slowest node can be the outlier
        return None

    def _probe(self, node: Any, readmit: bool) -> None:
        async def run() -> None:
            ok, reason, latency = await node.ping(max(self.config.timeout, 0.25))
            node.latency_ms = latency
            if ok:
                if readmit:
                    node.readmit()
                    self.router.flush_dirty()
            elif not readmit:
                node.record_failure(f"health check: {reason}")
                self.router.flush_dirty()

        task = asyncio.get_running_loop().create_task(run())
        self._probes.add(task)
        task.add_done_callback(self._probes.discard)

    async def check_health(self, timeout: float) -> list[BackendHealth]:
        nodes = list(self.router.nodes)
        results = await asyncio.gather(*(n.ping(timeout) for n in nodes))
        out = []
        for node, (ok, reason, latency) in zip(nodes, results, strict=True):
            if node.ejected and ok:
                reason = "ejected (answers PING; readmitted at next retry)"
            out.append(BackendHealth("redis", f"{self.name}/{node.name}", node.address, ok and not node.ejected,
                                     "ejected" if node.ejected and not reason else reason, latency))
        return out


class RedisPlane:
    name = "redis"

    def __init__(self, config: NexusConfig, metrics: Metrics) -> None:
        self.metrics = RedisMetrics(metrics)
        self.config = config
        section = config.redis
        self.pools: dict[str, RedisPool] = {}
        metrics.registry.register(NodeLatencyCollector(lambda: self.pools.values()))
        if section is not None:
            for name, pool_config in section.pools.items():
                self.pools[name] = RedisPool(name, pool_config, self.metrics)

    async def start(self) -> None:
        started = []
        try:
            for pool in self.pools.values():
                await pool.start()
                started.append(pool)
        except BaseException:
            for pool in started:
                await pool.close()
            raise
        # Measured: one full collection over the start-up heap (config, pydantic, prometheus, numpy...) paused the
        # loop for 64 ms under redis-benchmark -P 16, the whole of the p99 outlier. Frozen objects are never
        # scanned again; what requests allocate is freed by reference counting and stays cheap to collect.
        gc.freeze()

    async def reload(self, config: NexusConfig) -> None:
        """Pools whose config is unchanged keep their connections; changed ones are rebuilt; removed ones close."""
        new = config.redis.pools if config.redis is not None else {}
        keep: dict[str, RedisPool] = {}
        fresh: dict[str, RedisPool] = {}
        for name, pool_config in new.items():
            old = self.pools.get(name)
            if old is not None and old.config == pool_config:
                keep[name] = old
            else:
                fresh[name] = RedisPool(name, pool_config, self.metrics)
        for name, pool in self.pools.items():
            if name not in keep:
                await pool.close()
        for pool in fresh.values():
            await pool.start()
        self.pools = {**keep, **fresh}
        self.config = config

    def stop_accepting(self) -> None:
        for pool in self.pools.values():
            pool.stop_accepting()

    async def drain(self, timeout: float) -> None:
        await asyncio.gather(*(p.drain(timeout) for p in self.pools.values()))

    async def close(self) -> None:
        for pool in self.pools.values():
            await pool.close()

    async def check_health(self, timeout: float) -> list[BackendHealth]:
        out: list[BackendHealth] = []
        for pool in self.pools.values():
            out.extend(await pool.check_health(timeout))
        return out


def create_plane(config: NexusConfig, metrics: Metrics) -> RedisPlane:
    return RedisPlane(config, metrics)
