"""Prometheus metrics of the Redis plane, per pool and per node.

The hot path only bumps plain integer attributes on nodes and pools; ``collect`` (once a second, from the pool's
background task) turns their deltas into counter increments and sets the gauges.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from nexus_fast.observe.metrics import Metrics

if TYPE_CHECKING:
    from nexus_fast.redis.plane import RedisPool


class RedisMetrics:
    def __init__(self, metrics: Metrics) -> None:
        m = metrics
        self.requests = m.counter("nexus_redis_requests_total", "Requests sent to a node.", ["pool", "node"])
        self.replies = m.counter("nexus_redis_replies_total", "Replies received from a node.", ["pool", "node"])
        self.errors = m.counter("nexus_redis_node_errors_total", "Node failures (connect errors, lost "
                                "connections, timeouts, failed health checks).", ["pool", "node"])
        self.ejections = m.counter("nexus_redis_ejections_total", "Times a node was ejected from the ring.",
                                   ["pool", "node"])
        self.node_up = m.gauge("nexus_redis_node_up", "1 when the node is in the ring, 0 when ejected.",
                               ["pool", "node"])
        self.queue_depth = m.gauge("nexus_redis_node_queue_depth", "Requests awaiting a reply from the node.",
                                   ["pool", "node"])
        self.ping_latency = m.gauge("nexus_redis_node_ping_latency_seconds", "Latency of the last health PING.",
                                    ["pool", "node"])
        self.clients = m.gauge("nexus_redis_client_connections", "Open client connections.", ["pool"])
        self.client_queue = m.gauge("nexus_redis_client_pending_replies", "Replies owed to clients.", ["pool"])
        self.bytes_in = m.counter("nexus_redis_client_bytes_received_total", "Bytes read from clients.", ["pool"])
        self.unsupported = m.counter("nexus_redis_unsupported_commands_total", "Commands refused as "
                                     "unsupported.", ["pool"])
        self.auth_failures = m.counter("nexus_redis_auth_failures_total", "Failed client AUTH attempts.", ["pool"])
        self.compression_ratio = m.gauge("nexus_redis_compression_ratio", "Original/stored bytes of compressed "
                                         "values.", ["pool"])
        self.compression_saved = m.gauge("nexus_redis_compression_bytes_saved", "Bytes saved by compression "
                                         "since start.", ["pool"])
        self.compressed_values = m.gauge("nexus_redis_compressed_values", "Values stored compressed since "
                                         "start.", ["pool"])
        self._last: dict[tuple[str, ...], int] = {}

    def _delta(self, counter: Any, labels: tuple[str, ...], key: str, value: int) -> None:
        mark = (key, *labels)
        previous = self._last.get(mark, 0)
        if value > previous:
            counter.labels(*labels).inc(value - previous)
        self._last[mark] = value

    def collect(self, pool: RedisPool) -> None:
        name = pool.name
        for node in pool.router.nodes:
            labels = (name, node.name)
            self._delta(self.requests, labels, "requests", node.requests)
            self._delta(self.replies, labels, "replies", node.replies)
            self._delta(self.errors, labels, "errors", node.errors)
            self._delta(self.ejections, labels, "ejections", node.ejections)
            self.node_up.labels(*labels).set(0 if node.ejected else 1)
            self.queue_depth.labels(*labels).set(node.queue_depth)
            if node.latency_ms is not None:
                self.ping_latency.labels(*labels).set(node.latency_ms / 1000)
        self.clients.labels(name).set(len(pool.sessions))
        self.client_queue.labels(name).set(sum(len(s.queue) for s in pool.sessions))
        self._delta(self.bytes_in, (name,), "bytes_in", pool.bytes_in)
        self._delta(self.unsupported, (name,), "unsupported", pool.unsupported)
        self._delta(self.auth_failures, (name,), "auth_failures", pool.auth_failures)
        codec = pool.router.codec
        if codec is not None:
            self.compression_ratio.labels(name).set(codec.stats.ratio)
            self.compression_saved.labels(name).set(codec.stats.bytes_saved)
            self.compressed_values.labels(name).set(codec.stats.values_compressed)
