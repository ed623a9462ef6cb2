"""Eviction scoring kernel against its reference, and the scored cache against LRU."""

from __future__ import annotations

import contextlib

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from nexus_fast.cache import eviction as cache_eviction
from nexus_fast.cache.eviction import LRUCache, ScoredCache
from nexus_fast.kernels import eviction as E
from nexus_fast.kernels.jitmode import interpreted
from nexus_fast.kernels.reference import eviction as R


@pytest.fixture(scope="module", params=["jit", "python"])
def mode(request: pytest.FixtureRequest):
    if request.param == "jit":
        return contextlib.nullcontext
    return lambda: interpreted(E)


ENTRY = st.tuples(
    st.floats(0.0, 1000.0),  # decayed count
    st.floats(0.0, 500.0),  # last access
    st.integers(1, 1 << 20),  # size
    st.floats(0.0, 100.0),  # cost
    st.booleans(),  # live
)


@settings(max_examples=30, deadline=None)
@given(
    entries=st.lists(ENTRY, max_size=60),
    now=st.floats(0.0, 1000.0),
    half_life=st.floats(0.5, 1000.0),
    k=st.integers(0, 70),
)
def test_scores_and_candidates_match_reference(mode, entries, now, half_life, k) -> None:
    count = [e[0] for e in entries]
    last = [e[1] for e in entries]
    size = [float(e[2]) for e in entries]
    cost = [e[3] for e in entries]
    live = [e[4] for e in entries]
    with mode():
        scores = E.gdsf_scores(count, last, size, cost, now, half_life)
        got = E.eviction_candidates(count, last, size, cost, now, half_life, k, live)
        got_lowest = E.lowest_k(scores, k, live)
    expected_scores = R.gdsf_scores(count, last, size, cost, now, half_life)
    np.testing.assert_allclose(scores, expected_scores, rtol=1e-9, atol=1e-300)
    expected = R.eviction_candidates(count, last, size, cost, now, half_life, k, live)
    assert len(got) == len(expected) == min(k, sum(live))
    # Equal up to float ties: the chosen entries carry the k lowest reference scores, in order.
    np.testing.assert_allclose([expected_scores[i] for i in got], [expected_scores[i] for i in expected], rtol=1e-9)
    assert got_lowest.tolist() == R.lowest_k(scores.tolist(), k, live)


def test_score_prefers_keeping_frequent_recent_cheap_per_byte() -> None:
    # entry 0: frequent; 1: same count but old; 2: big; 3: cheap to refetch
    s = E.gdsf_scores([10, 10, 10, 10], [100, 0, 100, 100], [100, 100, 10000, 100], [1, 1, 1, 0.001], 100, 50)
    assert E.lowest_k(s, 4).tolist() == [3, 2, 1, 0]
    assert s[1] == pytest.approx(s[0] / 4)  # two half-lives old


def test_validation() -> None:
    with pytest.raises(ValueError):
        E.gdsf_scores([1], [0], [0], [1], 0, 1)
    with pytest.raises(ValueError):
        E.gdsf_scores([1], [0], [1], [1], 0, 0)
    with pytest.raises(ValueError):
        E.eviction_candidates([1, 2], [0], [1], [1], 0, 1, 1)
    assert E.lowest_k([1.0, 2.0], 0).tolist() == []


@pytest.mark.parametrize("cls", [LRUCache, ScoredCache])
def test_caches_respect_the_byte_budget(cls) -> None:
    cache = cls(10_000)
    rng = np.random.default_rng(3)
    for _ in range(3000):
        key = int(rng.integers(0, 500))
        if cache.get(key) is None:
            assert cache.put(key, b"x" * int(rng.integers(1, 2000)))
        assert cache.used_bytes <= 10_000
    assert cache.put("too big", b"x" * 10_001) is False
    assert cache.stats.evictions > 0
    assert 0.0 < cache.stats.hit_ratio < 1.0


def test_scored_cache_get_put_roundtrip_and_replace() -> None:
    cache = ScoredCache(1000, half_life=10, clock=lambda: 0.0)
    assert cache.put("a", b"1" * 100)
    assert cache.get("a") == b"1" * 100
    assert cache.put("a", b"2" * 300)
    assert cache.used_bytes == 300 and len(cache) == 1
    for i in range(50):  # grows past its initial slot capacity
        cache.put(i, b"z" * 10)
    assert "a" in cache or cache.used_bytes <= 1000


def test_scored_cache_beats_lru_on_zipf_and_scans() -> None:
    rows = cache_eviction.compare(n_keys=1500, n_requests=20_000, alphas=(0.7, 1.2), seed=11)
    assert len(rows) == 5  # two Zipf, scans, and the equal-size variants
    for row in rows:
        assert row.scored > row.lru, row


@pytest.mark.parametrize("cls", [LRUCache, ScoredCache])
def test_delete_and_oversized_replacement_drop_the_stale_value(cls) -> None:
    cache = cls(1000)
    assert cache.put("a", b"1" * 100) and cache.put("b", b"2" * 100)
    assert cache.delete("a") is True and cache.delete("a") is False
    assert cache.get("a") is None and cache.used_bytes == 100
    assert cache.put("b", b"3" * 5000) is False  # too big to cache: the old value must not be served
    assert cache.get("b") is None and cache.used_bytes == 0 and len(cache) == 0
    assert cache.stats.evictions == 0
