"""Streaming anomaly statistics over metric series (Numba kernels): EWMA z-score, rolling median/MAD, seasonal.

Each detector scores a batch of samples against the state built from everything before it, flags
``|score| > threshold`` once warmed up, then folds the batch into the state, so feeding a series in one batch or in
many gives the same scores (the tests check that). State is a small NumPy array owned by the caller (the detector
classes in ``nexus_fast.observe.anomaly`` wrap it).

- EWMA: exponentially weighted mean and variance (Finch, "Incremental calculation of weighted mean and variance",
  2009: ``diff = x - mean; mean += a*diff; var = (1 - a) * (var + a*diff*diff)``); score ``(x - mean) / sd``.
  A flagged sample enters the state winsorised to ``mean +- threshold*sd`` so one spike does not inflate the
  variance and hide the next (a level shift is still learned, a little at a time).
- Rolling median/MAD: the modified z-score of Iglewicz & Hoaglin (1993), ``0.6745 (x - median) / MAD``, over the
  last ``window`` samples; when MAD is 0 the mean absolute deviation x 1.2533 stands in (as IBM SPSS does).
- Seasonal: an EWMA baseline per season slot (``slot = floor(t / slot_seconds) mod n_slots``: hour of day, hour
  of week), so a sample is compared with the same time of day/week rather than with the last minute; the residuals
  of all slots share one EWMA variance, because a slot sees one sample a week and could not estimate its own
  (the additive seasonal model of Holt-Winters, with a pooled error scale).

References: ``nexus_fast.kernels.reference.anomaly``.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numba import njit

from nexus_fast.kernels.config import NJIT_OPTIONS
from nexus_fast.kernels.jitmode import run_kernel

MIN_SCALE = 1e-12
MAD_TO_Z = 0.6745
MEAN_AD_TO_MAD = 1.253314
# Residual samples seen (over all slots) before the seasonal detector flags anything.
SEASONAL_RESIDUAL_WARMUP = 20


@njit(**NJIT_OPTIONS)
def _ewma_step(x: float, mean: float, var: float, n: float, alpha: float, threshold: float, warmup: int) -> Any:
    """One sample against one EWMA state: (score, flag, mean', var', n')."""
    if n == 0.0:
        return 0.0, False, x, 0.0, 1.0
    sd = np.sqrt(var)
    if sd < MIN_SCALE:
        sd = MIN_SCALE
    score = (x - mean) / sd
    flag = n >= warmup and abs(score) > threshold
    xc = x
    if flag:
        xc = mean + threshold * sd if score > 0 else mean - threshold * sd
    diff = xc - mean
    incr = alpha * diff
    return score, flag, mean + incr, (1.0 - alpha) * (var + diff * incr), n + 1.0


@njit(**NJIT_OPTIONS)
def _ewma_kernel(values: Any, state: Any, alpha: float, threshold: float, warmup: int) -> Any:
    """``state`` = [mean, var, n], updated in place."""
    scores = np.empty(values.size, dtype=np.float64)
    flags = np.empty(values.size, dtype=np.bool_)
    mean, var, n = state[0], state[1], state[2]
    for i in range(values.size):
        s, f, mean, var, n = _ewma_step(values[i], mean, var, n, alpha, threshold, warmup)
        scores[i] = s
        flags[i] = f
    state[0], state[1], state[2] = mean, var, n
    return scores, flags


@njit(**NJIT_OPTIONS)
def _median_sorted(a: Any, f: int) -> float:
    if f % 2 == 1:
        return float(a[f // 2])
    return 0.5 * (a[f // 2 - 1] + a[f // 2])


@njit(**NJIT_OPTIONS)
def _mad_sorted(a: Any, f: int, med: float) -> float:
    """Median of |a[i] - med| over sorted ``a[:f]``, without sorting: the deviations left of ``med`` grow going
    left and those right of it grow going right, so merging the two runs from the middle yields them in order."""
    lo = 0
    hi = f
    while lo < hi:  # first index with a[i] > med
        mid = (lo + hi) >> 1
        if a[mid] <= med:
            lo = mid + 1
        else:
            hi = mid
    left = lo - 1
    right = lo
    k1 = (f - 1) // 2
    k2 = f // 2
    d1 = 0.0
    for t in range(k2 + 1):
        if right >= f or (left >= 0 and med - a[left] <= a[right] - med):
            d = med - a[left]
            left -= 1
        else:
            d = a[right] - med
            right += 1
        if t == k1:
            d1 = d
        if t == k2:
            return 0.5 * (d1 + d) if k1 != k2 else d
    return d1


@njit(**NJIT_OPTIONS)
def _sorted_replace(a: Any, f: int, old: float, new: float, remove: bool) -> None:
    """Keep ``a[:f]`` sorted: drop one ``old`` (when ``remove``) and insert ``new`` (``a`` has room for f + 1)."""
    n = f
    if remove:
        lo = 0
        hi = n
        while lo < hi:  # first index with a[i] >= old
            mid = (lo + hi) >> 1
            if a[mid] < old:
                lo = mid + 1
            else:
                hi = mid
        for i in range(lo, n - 1):
            a[i] = a[i + 1]
        n -= 1
    i = n
    while i > 0 and a[i - 1] > new:
        a[i] = a[i - 1]
        i -= 1
    a[i] = new


@njit(**NJIT_OPTIONS)
def _mad_kernel(values: Any, ring: Any, ordered: Any, meta: Any, threshold: float, warmup: int) -> Any:
    """``ring`` holds the last ``window`` samples in arrival order and ``ordered`` the same samples sorted;
    ``meta`` = [count, next position]; all updated in place. O(window) per sample, no allocation."""
    window = ring.size
    scores = np.empty(values.size, dtype=np.float64)
    flags = np.empty(values.size, dtype=np.bool_)
    count = meta[0]
    pos = meta[1]
    for i in range(values.size):
        x = values[i]
        filled = count if count < window else window
        score = 0.0
        if filled > 0:
            med = _median_sorted(ordered, filled)
            mad = _mad_sorted(ordered, filled, med)
            if mad > 0.0:
                score = MAD_TO_Z * (x - med) / mad
            else:
                total = 0.0
                for j in range(filled):
                    total += abs(ordered[j] - med)
                scale = MEAN_AD_TO_MAD * total / filled
                if scale < MIN_SCALE:
                    scale = MIN_SCALE
                score = (x - med) / scale
        scores[i] = score
        flags[i] = filled >= warmup and abs(score) > threshold
        _sorted_replace(ordered, filled, ring[pos], x, count >= window)
        ring[pos] = x
        pos = (pos + 1) % window
        count += 1
    meta[0] = count
    meta[1] = pos
    return scores, flags


@njit(**NJIT_OPTIONS)
def _seasonal_kernel(
    times: Any,
    values: Any,
    state: Any,
    slot_seconds: float,
    alpha: float,
    var_alpha: float,
    threshold: float,
    warmup: int,
) -> Any:
    """``state`` is (n_slots + 1, 3): rows [mean, unused, n] per slot, then [unused, var, n] of the residuals."""
    n_slots = state.shape[0] - 1
    scores = np.empty(values.size, dtype=np.float64)
    flags = np.empty(values.size, dtype=np.bool_)
    for i in range(values.size):
        x = values[i]
        slot = int(np.floor(times[i] / slot_seconds)) % n_slots
        mean = state[slot, 0]
        n = state[slot, 2]
        if n == 0.0:
            state[slot, 0] = x
            state[slot, 2] = 1.0
            scores[i] = 0.0
            flags[i] = False
            continue
        var = state[n_slots, 1]
        gn = state[n_slots, 2]
        sd = np.sqrt(var)
        if sd < MIN_SCALE:
            sd = MIN_SCALE
        r = x - mean
        score = r / sd
        flag = n >= warmup and gn >= SEASONAL_RESIDUAL_WARMUP and abs(score) > threshold
        if flag:
            r = threshold * sd if score > 0 else -threshold * sd
        state[slot, 0] = mean + alpha * r
        state[slot, 2] = n + 1.0
        state[n_slots, 1] = r * r if gn == 0.0 else var + var_alpha * (r * r - var)
        state[n_slots, 2] = gn + 1.0
        scores[i] = score
        flags[i] = flag
    return scores, flags


def _series(name: str, a: Any) -> np.ndarray:
    arr = np.ascontiguousarray(a, dtype=np.float64)
    if arr.ndim != 1:
        raise ValueError(f"{name} must be 1-D")
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} must be finite")
    return arr


def _check(alpha: float | None, threshold: float, warmup: int) -> None:
    if alpha is not None and not 0.0 < alpha <= 1.0:
        raise ValueError("alpha must be in (0, 1]")
    if not threshold > 0.0:
        raise ValueError("threshold must be > 0")
    if warmup < 0:
        raise ValueError("warmup must be >= 0")


def new_ewma_state() -> np.ndarray:
    return np.zeros(3, dtype=np.float64)


def ewma_scores(
    values: Any, state: np.ndarray, alpha: float = 0.1, threshold: float = 4.0, warmup: int = 20
) -> tuple[np.ndarray, np.ndarray]:
    """EWMA z-scores and flags of ``values``; ``state`` (from ``new_ewma_state``) is updated in place."""
    _check(alpha, threshold, warmup)
    if state.shape != (3,) or state.dtype != np.float64:
        raise ValueError("state must come from new_ewma_state()")
    return run_kernel(_ewma_kernel, _series("values", values), state, float(alpha), float(threshold), int(warmup))  # type: ignore[no-any-return]


def new_mad_state(window: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(samples in arrival order, the same sorted (one spare slot), [count, next position])."""
    if window < 1:
        raise ValueError("window must be >= 1")
    return np.zeros(window, dtype=np.float64), np.zeros(window + 1, dtype=np.float64), np.zeros(2, dtype=np.int64)


def mad_scores(
    values: Any, state: tuple[np.ndarray, np.ndarray, np.ndarray], threshold: float = 3.5, warmup: int = 10
) -> tuple[np.ndarray, np.ndarray]:
    """Robust (median/MAD) z-scores and flags of ``values`` over a rolling window; ``state`` updated in place."""
    _check(None, threshold, warmup)
    ring, ordered, meta = state
    if ring.dtype != np.float64 or ordered.shape != (ring.size + 1,) or meta.shape != (2,) or meta.dtype != np.int64:
        raise ValueError("state must come from new_mad_state()")
    return run_kernel(_mad_kernel, _series("values", values), ring, ordered, meta, float(threshold), int(warmup))  # type: ignore[no-any-return]


def new_seasonal_state(n_slots: int) -> np.ndarray:
    if n_slots < 1:
        raise ValueError("n_slots must be >= 1")
    return np.zeros((n_slots + 1, 3), dtype=np.float64)


def seasonal_scores(
    times: Any,
    values: Any,
    state: np.ndarray,
    slot_seconds: float = 3600.0,
    alpha: float = 0.3,
    threshold: float = 4.0,
    warmup: int = 2,
    var_alpha: float = 0.02,
) -> tuple[np.ndarray, np.ndarray]:
    """Seasonal z-scores and flags; ``times`` in seconds (epoch or relative), ``state`` updated in place.

    ``alpha`` weighs the newest sample in its slot's baseline, ``var_alpha`` in the residual variance shared by
    all slots; ``warmup`` is the samples a slot needs before it can flag.
    """
    _check(alpha, threshold, warmup)
    _check(var_alpha, threshold, warmup)
    if not slot_seconds > 0.0:
        raise ValueError("slot_seconds must be > 0")
    t = _series("times", times)
    v = _series("values", values)
    if t.shape != v.shape:
        raise ValueError("times and values must have the same length")
    if state.ndim != 2 or state.shape[0] < 2 or state.shape[1] != 3 or state.dtype != np.float64:
        raise ValueError("state must come from new_seasonal_state()")
    return run_kernel(  # type: ignore[no-any-return]
        _seasonal_kernel, t, v, state, float(slot_seconds), float(alpha), float(var_alpha), float(threshold), int(warmup)
    )
