"""Per-node latency accounting (plain counters exported at scrape time) and the outlier-detection settings."""

from __future__ import annotations

import pytest

from nexus_fast.config.errors import ConfigError
from nexus_fast.config.load import validate
from nexus_fast.redis.metrics import EWMA_ALPHA, LATENCY_BUCKETS, LatencyHistogram


def test_weighted_observations_fill_cumulative_buckets():
    hist = LatencyHistogram()
    hist.observe(0.00005, 10)  # ten requests written together, answered within 50 us
    hist.observe(0.003, 2)
    hist.observe(9.0)
    buckets = dict(hist.buckets())
    assert buckets["0.0001"] == 10 and buckets["0.001"] == 10 and buckets["0.005"] == 12
    assert buckets["+Inf"] == 13 == hist.count
    assert hist.sum == pytest.approx(0.0005 + 0.006 + 9.0)
    assert len(hist.buckets()) == len(LATENCY_BUCKETS) + 1


def test_ewma_follows_batches_and_resets():
    hist = LatencyHistogram()
    hist.observe(0.001, 50)
    assert hist.ewma == 0.001  # the first batch seeds it, whatever its size
    hist.observe(0.011)
    assert hist.ewma == pytest.approx(0.001 + EWMA_ALPHA * 0.010)
    hist.reset_ewma()
    assert hist.ewma == 0.0 and hist.batches == 0 and hist.count == 51  # the histogram itself is kept


@pytest.mark.parametrize("extra", [{"mode": "cluster"}, {"auto_eject_hosts": False}])
def test_outlier_detection_needs_an_ejecting_ring(extra):
    pool = {"servers": ["127.0.0.1:7001:1"], "outlier_detection": True, "auto_eject_hosts": True, **extra}
    with pytest.raises(ConfigError, match="outlier_detection"):
        validate({"redis": {"pools": {"p": pool}}}, "t")


def test_outlier_detection_is_off_by_default():
    config = validate({"redis": {"pools": {"p": {"servers": ["127.0.0.1:7001:1"]}}}}, "t")
    pool = config.redis.pools["p"]
    assert pool.outlier_detection is False and pool.outlier_latency_factor == 5.0
    assert pool.outlier_min_latency == 0.005
