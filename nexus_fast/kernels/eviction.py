"""Eviction scoring: a GDSF-style score with exponentially decayed frequency, and the k lowest-scoring entries.

Greedy-Dual-Size-Frequency (Cherkasova, "Improving WWW Proxies Performance with Greedy-Dual-Size-Frequency
Caching Policy", HP Labs 1998) keeps the entries with the most value per byte: ``frequency x cost / size``. Its
aging term ``L`` is replaced here by exponential decay of the frequency (as in LFU with dynamic aging / "LRFU",
Lee et al. 2001): an entry's count halves every ``half_life`` time units without access, so recency enters the
score and yesterday's hot keys make room.

    decayed_count = count x 2 ** (-(now - last_access) / half_life)
    score         = decayed_count x cost / size

``count`` is the decayed count as of ``last_access`` (the cache updates it on each hit as
``count x 2 ** (-dt / half_life) + 1``). The cache calls ``eviction_candidates`` in batches, off the per-request path.
References: ``nexus_fast.kernels.reference.eviction``.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numba import njit

from nexus_fast.kernels.config import NJIT_OPTIONS
from nexus_fast.kernels.jitmode import run_kernel

LN2 = 0.6931471805599453


@njit(**NJIT_OPTIONS)
def _score_one(count: float, last: float, size: float, cost: float, now: float, half_life: float) -> float:
    age = now - last
    if age < 0.0:
        age = 0.0
    return count * np.exp(-LN2 * age / half_life) * cost / size


@njit(**NJIT_OPTIONS)
def _gdsf_scores_kernel(count: Any, last: Any, size: Any, cost: Any, now: float, half_life: float) -> Any:
    out = np.empty(count.size, dtype=np.float64)
    for i in range(count.size):
        out[i] = _score_one(count[i], last[i], size[i], cost[i], now, half_life)
    return out


@njit(**NJIT_OPTIONS)
def _sift_down(hs: Any, hi: Any, m: int, pos: int) -> None:
    # Max-heap on (score, index): the root is the worst of the k best-so-far.
    while True:
        child = 2 * pos + 1
        if child >= m:
            return
        if child + 1 < m and (hs[child + 1] > hs[child] or (hs[child + 1] == hs[child] and hi[child + 1] > hi[child])):
            child += 1
        if hs[child] > hs[pos] or (hs[child] == hs[pos] and hi[child] > hi[pos]):
            hs[child], hs[pos] = hs[pos], hs[child]
            hi[child], hi[pos] = hi[pos], hi[child]
            pos = child
        else:
            return


@njit(**NJIT_OPTIONS)
def _sift_up(hs: Any, hi: Any, pos: int) -> None:
    while pos > 0:
        parent = (pos - 1) // 2
        if hs[pos] > hs[parent] or (hs[pos] == hs[parent] and hi[pos] > hi[parent]):
            hs[pos], hs[parent] = hs[parent], hs[pos]
            hi[pos], hi[parent] = hi[parent], hi[pos]
            pos = parent
        else:
            return


@njit(**NJIT_OPTIONS)
def _heap_push_bounded(hs: Any, hi: Any, m: int, k: int, s: float, i: int) -> int:
    if m < k:
        hs[m] = s
        hi[m] = i
        _sift_up(hs, hi, m)
        return m + 1
    if s < hs[0] or (s == hs[0] and i < hi[0]):
        hs[0] = s
        hi[0] = i
        _sift_down(hs, hi, m, 0)
    return m


@njit(**NJIT_OPTIONS)
def _heap_sorted(hs: Any, hi: Any, m: int) -> Any:
    # Pop the max repeatedly into the tail: ascending (score, index) order.
    end = m
    while end > 1:
        end -= 1
        hs[0], hs[end] = hs[end], hs[0]
        hi[0], hi[end] = hi[end], hi[0]
        _sift_down(hs, hi, end, 0)
    return hi[:m].copy()


@njit(**NJIT_OPTIONS)
def _lowest_k_kernel(scores: Any, live: Any, k: int) -> Any:
    hs = np.empty(k, dtype=np.float64)
    hi = np.empty(k, dtype=np.int64)
    m = 0
    for i in range(scores.size):
        if live[i]:
            m = _heap_push_bounded(hs, hi, m, k, scores[i], i)
    return _heap_sorted(hs, hi, m)


@njit(**NJIT_OPTIONS)
def _eviction_candidates_kernel(
    count: Any, last: Any, size: Any, cost: Any, live: Any, now: float, half_life: float, k: int
) -> Any:
    hs = np.empty(k, dtype=np.float64)
    hi = np.empty(k, dtype=np.int64)
    m = 0
    for i in range(count.size):
        if live[i]:
            s = _score_one(count[i], last[i], size[i], cost[i], now, half_life)
            m = _heap_push_bounded(hs, hi, m, k, s, i)
    return _heap_sorted(hs, hi, m)


def _f64(name: str, a: Any, n: int | None) -> np.ndarray:
    arr = np.ascontiguousarray(a, dtype=np.float64)
    if arr.ndim != 1 or (n is not None and arr.size != n):
        raise ValueError(f"{name} must be a 1-D array of the same length as count")
    return arr


def _inputs(
    count: Any, last_access: Any, size: Any, cost: Any, half_life: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    c = _f64("count", count, None)
    n = c.size
    la, sz, co = _f64("last_access", last_access, n), _f64("size", size, n), _f64("cost", cost, n)
    if not half_life > 0.0:
        raise ValueError("half_life must be > 0")
    if n and not np.all(sz > 0.0):
        raise ValueError("sizes must be > 0")
    return c, la, sz, co


def gdsf_scores(count: Any, last_access: Any, size: Any, cost: Any, now: float, half_life: float) -> np.ndarray:
    """The score of every entry (lower is evicted first)."""
    c, la, sz, co = _inputs(count, last_access, size, cost, half_life)
    return run_kernel(_gdsf_scores_kernel, c, la, sz, co, float(now), float(half_life))  # type: ignore[no-any-return]


def lowest_k(scores: Any, k: int, live: Any = None) -> np.ndarray:
    """Indices of the ``k`` lowest scores (among ``live`` entries), lowest first; ties by index."""
    s = _f64("scores", scores, None)
    mask = np.ones(s.size, dtype=np.bool_) if live is None else np.ascontiguousarray(live, dtype=np.bool_)
    if mask.shape != s.shape:
        raise ValueError("live must have one flag per score")
    if k < 0:
        raise ValueError("k must be >= 0")
    if k == 0:
        return np.empty(0, dtype=np.int64)
    return run_kernel(_lowest_k_kernel, s, mask, int(k))  # type: ignore[no-any-return]


def eviction_candidates(
    count: Any,
    last_access: Any,
    size: Any,
    cost: Any,
    now: float,
    half_life: float,
    k: int,
    live: Any = None,
) -> np.ndarray:
    """Indices of the ``k`` lowest-scoring live entries, lowest first: score and select in one pass."""
    c, la, sz, co = _inputs(count, last_access, size, cost, half_life)
    mask = np.ones(c.size, dtype=np.bool_) if live is None else np.ascontiguousarray(live, dtype=np.bool_)
    if mask.shape != c.shape:
        raise ValueError("live must have one flag per entry")
    if k < 0:
        raise ValueError("k must be >= 0")
    if k == 0:
        return np.empty(0, dtype=np.int64)
    return run_kernel(  # type: ignore[no-any-return]
        _eviction_candidates_kernel, c, la, sz, co, mask, float(now), float(half_life), int(k)
    )
