"""The metrics registry every component registers into, exposed as Prometheus text on ``/metrics``.

A thin layer over prometheus_client (the reference Prometheus library; its exposition format and histogram
semantics are what Prometheus and Grafana expect). Each worker process owns one ``Metrics``; components receive
it at construction instead of touching a global registry, so tests can build isolated ones.
Metric names follow ``nexus_<plane>_<what>_<unit>`` and use the same words as the config keys.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Sequence

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

# Latency buckets from 50us to 10s: proxy hops are sub-millisecond, slow queries are seconds.
LATENCY_BUCKETS = (
    0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
)


class BucketHistogram:
    """Cumulative latency buckets kept as plain counters, exported at scrape time by a plane's collector.

    Observing is a bisect and an add, cheap enough for the per-request paths (a prometheus_client Histogram takes a
    lock and walks its buckets per observation). Both data planes use it; hot loops may inline ``observe`` by
    bumping ``counts[bisect_left(bounds, seconds)]`` and ``sum`` themselves.
    """

    __slots__ = ("bounds", "counts", "sum")

    def __init__(self, bounds: Sequence[float] = LATENCY_BUCKETS) -> None:
        self.bounds = tuple(bounds)
        self.counts = [0] * (len(self.bounds) + 1)
        self.sum = 0.0

    def observe(self, seconds: float, count: int = 1) -> None:
        """``count`` events that each took ``seconds``."""
        self.counts[bisect_left(self.bounds, seconds)] += count
        self.sum += seconds * count

    @property
    def count(self) -> int:
        return sum(self.counts)

    def buckets(self) -> list[tuple[str, float]]:
        """(upper bound, cumulative count) pairs as ``HistogramMetricFamily.add_metric`` takes them."""
        out, total = [], 0
        for bound, count in zip((*self.bounds, float("inf")), self.counts, strict=True):
            total += count
            out.append(("+Inf" if bound == float("inf") else repr(bound), float(total)))
        return out


class Metrics:
    content_type = CONTENT_TYPE_LATEST

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self._by_name: dict[str, Counter | Gauge | Histogram] = {}

    def counter(self, name: str, documentation: str, labels: Sequence[str] = ()) -> Counter:
        return self._get_or_create(Counter, name, documentation, labels)  # type: ignore[return-value]

    def gauge(self, name: str, documentation: str, labels: Sequence[str] = ()) -> Gauge:
        return self._get_or_create(Gauge, name, documentation, labels)  # type: ignore[return-value]

    def histogram(
        self, name: str, documentation: str, labels: Sequence[str] = (), buckets: Sequence[float] = LATENCY_BUCKETS
    ) -> Histogram:
        existing = self._by_name.get(name)
        if existing is not None:
            return existing  # type: ignore[return-value]
        metric = Histogram(name, documentation, list(labels), registry=self.registry, buckets=tuple(buckets))
        self._by_name[name] = metric
        return metric

    def _get_or_create(self, kind: type, name: str, documentation: str, labels: Sequence[str]) -> object:
        # Reloads re-create pools; they must find the metric they registered before, not collide with it.
        existing = self._by_name.get(name)
        if existing is not None:
            if not isinstance(existing, kind):
                raise ValueError(f"metric {name} already registered as {type(existing).__name__}")
            return existing
        metric = kind(name, documentation, list(labels), registry=self.registry)
        self._by_name[name] = metric
        return metric

    def exposition(self) -> bytes:
        return generate_latest(self.registry)
