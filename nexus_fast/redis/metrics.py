"""Prometheus metrics of the Redis plane, per pool and per node.

The hot path only bumps plain integer attributes on nodes and pools; ``collect`` (once a second, from the pool's
background task) turns their deltas into counter increments and sets the gauges. Request latency is kept per node
in a ``LatencyHistogram`` of plain counters (one weighted observation per coalesced write, see
``ServerConnection``) and exported at scrape time by ``NodeLatencyCollector``.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Callable, Iterable, Iterator
from typing import TYPE_CHECKING, Any

from prometheus_client.core import HistogramMetricFamily

from nexus_fast.observe.metrics import BucketHistogram, Metrics

if TYPE_CHECKING:
    from nexus_fast.redis.plane import RedisPool

# Seconds. A Redis round trip through the proxy is ~100 us idle and a few ms under load; 1 s and above is a stall.
LATENCY_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)
EWMA_ALPHA = 0.1  # weight of the newest batch in the latency EWMA used by outlier detection


class LatencyHistogram(BucketHistogram):
    """Per-node latency buckets plus an EWMA of batch latency for outlier detection."""

    __slots__ = ("batches", "ewma")

    def __init__(self) -> None:
        super().__init__(LATENCY_BUCKETS)
        self.ewma = 0.0
        self.batches = 0

    def observe(self, seconds: float, count: int = 1) -> None:
        """``count`` requests written together that took ``seconds``."""
        self.counts[bisect_left(LATENCY_BUCKETS, seconds)] += count
        self.sum += seconds * count
        self.ewma = seconds if not self.batches else self.ewma + EWMA_ALPHA * (seconds - self.ewma)
        self.batches += 1

    def reset_ewma(self) -> None:
        self.ewma = 0.0
        self.batches = 0


class NodeLatencyCollector:
    """Exports every pool's per-node ``LatencyHistogram`` as ``nexus_redis_request_duration_seconds``."""

    NAME = "nexus_redis_request_duration_seconds"
    DOC = ("Request latency per node, from the proxy's write to the node to the reply read (requests written "
           "together are timed together).")

    def __init__(self, pools: Callable[[], Iterable[RedisPool]]) -> None:
        self.pools = pools

    def describe(self) -> list[Any]:
        return [HistogramMetricFamily(self.NAME, self.DOC, labels=["pool", "node"])]

    def collect(self) -> Iterator[Any]:
        family = HistogramMetricFamily(self.NAME, self.DOC, labels=["pool", "node"])
        for pool in list(self.pools()):
            for node in list(pool.router.nodes):
                family.add_metric([pool.name, node.name], node.latency.buckets(), node.latency.sum)
        yield family


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
        self.error_replies = m.counter("nexus_redis_node_error_replies_total", "Error replies a node sent "
                                       "(WRONGTYPE, OOM, ...).", ["pool", "node"])
        self.node_bytes_sent = m.counter("nexus_redis_node_bytes_sent_total", "Request bytes written to a node.",
                                         ["pool", "node"])
        self.node_bytes_received = m.counter("nexus_redis_node_bytes_received_total", "Reply bytes read from a "
                                             "node.", ["pool", "node"])
        self.outlier_ejections = m.counter("nexus_redis_outlier_ejections_total", "Times a node was ejected for "
                                           "latency far above its peers'.", ["pool", "node"])
        self.latency_ewma = m.gauge("nexus_redis_node_latency_ewma_seconds", "Moving average of the node's "
                                    "request latency (what outlier detection compares).", ["pool", "node"])
        self.near_entries = m.gauge("nexus_redis_near_cache_entries", "Replies held in the near-cache.", ["pool"])
        self.near_bytes = m.gauge("nexus_redis_near_cache_bytes", "Bytes the near-cache charges against its "
                                  "budget.", ["pool"])
        self.near_events = m.counter("nexus_redis_near_cache_events_total", "Near-cache hits, misses, fills, "
                                     "evictions, invalidations and flushes.", ["pool", "event"])
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
            self._delta(self.error_replies, labels, "error_replies", node.error_replies)
            self._delta(self.node_bytes_sent, labels, "bytes_out", node.bytes_out)
            self._delta(self.node_bytes_received, labels, "bytes_in", node.bytes_in)
            self._delta(self.outlier_ejections, labels, "outlier_ejections", node.outlier_ejections)
            self.latency_ewma.labels(*labels).set(node.latency.ewma)
            self.node_up.labels(*labels).set(0 if node.ejected else 1)
            self.queue_depth.labels(*labels).set(node.queue_depth)
            if node.latency_ms is not None:
                self.ping_latency.labels(*labels).set(node.latency_ms / 1000)
        self.clients.labels(name).set(len(pool.sessions))
        self.client_queue.labels(name).set(sum(len(s.queue) for s in pool.sessions))
        self._delta(self.bytes_in, (name,), "bytes_in", pool.bytes_in)
        self._delta(self.unsupported, (name,), "unsupported", pool.unsupported)
        self._delta(self.auth_failures, (name,), "auth_failures", pool.auth_failures)
        near = pool.router.near
        if near is not None:
            self.near_entries.labels(name).set(len(near))
            self.near_bytes.labels(name).set(near.bytes)
            for event in ("hits", "misses", "fills", "evictions", "invalidations", "flushes"):
                self._delta(self.near_events, (name, event), "near", getattr(near, event))
        codec = pool.router.codec
        if codec is not None:
            self.compression_ratio.labels(name).set(codec.stats.ratio)
            self.compression_saved.labels(name).set(codec.stats.bytes_saved)
            self.compressed_values.labels(name).set(codec.stats.values_compressed)
