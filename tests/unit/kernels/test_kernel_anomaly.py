"""Streaming anomaly kernels against their references, batch-split invariance, and precision/recall."""

from __future__ import annotations

import contextlib

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from nexus_fast.kernels import anomaly as A
from nexus_fast.kernels.jitmode import interpreted
from nexus_fast.kernels.reference import anomaly as R
from nexus_fast.observe import anomaly as observe

SERIES = st.lists(st.floats(-1e3, 1e3), max_size=80)
SETTINGS = settings(max_examples=25, deadline=None)


@pytest.fixture(scope="module", params=["jit", "python"])
def mode(request: pytest.FixtureRequest):
    if request.param == "jit":
        return contextlib.nullcontext
    return lambda: interpreted(A)


def _close(got: tuple[np.ndarray, np.ndarray], expected: tuple[list[float], list[bool]], threshold: float) -> None:
    np.testing.assert_allclose(got[0], expected[0], rtol=1e-7, atol=1e-6)
    # A flag may only differ where the score sits on the threshold within float noise.
    for i in np.flatnonzero(got[1] != np.array(expected[1], dtype=bool)):
        assert abs(abs(expected[0][i]) - threshold) < 1e-6 * max(1.0, threshold), (i, got[0][i], expected[0][i])


@SETTINGS
@given(values=SERIES, alpha=st.floats(0.01, 1.0), threshold=st.floats(0.5, 6.0), warmup=st.integers(0, 10))
def test_ewma_matches_reference(mode, values, alpha, threshold, warmup) -> None:
    with mode():
        got = A.ewma_scores(values, A.new_ewma_state(), alpha, threshold, warmup)
    _close(got, R.ewma(values, alpha, threshold, warmup), threshold)


@SETTINGS
@given(values=SERIES, window=st.integers(1, 20), threshold=st.floats(0.5, 6.0), warmup=st.integers(0, 10))
def test_mad_matches_reference(mode, values, window, threshold, warmup) -> None:
    with mode():
        got = A.mad_scores(values, A.new_mad_state(window), threshold, warmup)
    _close(got, R.mad(values, window, threshold, warmup), threshold)


@SETTINGS
@given(
    samples=st.lists(st.tuples(st.floats(0, 1e6), st.floats(-1e3, 1e3)), max_size=80),
    n_slots=st.integers(1, 24),
    alpha=st.floats(0.01, 1.0),
    warmup=st.integers(0, 4),
)
def test_seasonal_matches_reference(mode, samples, n_slots, alpha, warmup) -> None:
    times = [t for t, _ in samples]
    values = [v for _, v in samples]
    with mode():
        got = A.seasonal_scores(times, values, A.new_seasonal_state(n_slots), 3600.0, alpha, 3.0, warmup, 0.05)
    _close(got, R.seasonal(times, values, n_slots, 3600.0, alpha, 0.05, 3.0, warmup), 3.0)


@SETTINGS
@given(values=st.lists(st.floats(-100, 100), min_size=1, max_size=60), cut=st.integers(0, 60))
def test_incremental_updates_equal_one_batch(values, cut) -> None:
    cut = min(cut, len(values))
    times = [600.0 * i for i in range(len(values))]
    for make, call in (
        (observe.EwmaDetector, lambda d, lo, hi: d.update(values[lo:hi])),
        (observe.MadDetector, lambda d, lo, hi: d.update(values[lo:hi])),
        (lambda: observe.SeasonalDetector(n_slots=6), lambda d, lo, hi: d.update(times[lo:hi], values[lo:hi])),
    ):
        whole = call(make(), 0, len(values))
        det = make()
        first, second = call(det, 0, cut), call(det, cut, len(values))
        np.testing.assert_allclose(np.concatenate([first[0], second[0]]), whole[0])
        assert np.concatenate([first[1], second[1]]).tolist() == whole[1].tolist()


def test_validation() -> None:
    with pytest.raises(ValueError):
        A.ewma_scores([1.0], A.new_ewma_state(), alpha=0.0)
    with pytest.raises(ValueError):
        A.ewma_scores([float("nan")], A.new_ewma_state())
    with pytest.raises(ValueError):
        A.mad_scores([1.0], A.new_mad_state(3), threshold=0.0)
    with pytest.raises(ValueError):
        A.new_mad_state(0)
    with pytest.raises(ValueError):
        A.seasonal_scores([1.0, 2.0], [1.0], A.new_seasonal_state(4))
    with pytest.raises(ValueError):
        observe.labelled_series("daily")


def test_detectors_find_injected_spikes_with_good_precision_and_recall() -> None:
    scores = {(r.detector, r.series): r for r in observe.evaluate(seed=3)}
    for key in (("ewma", "level"), ("mad", "level")):
        assert scores[key].precision >= 0.7, scores[key]
        assert scores[key].recall >= 0.9, scores[key]
    seasonal = scores[("seasonal", "weekly")]
    assert seasonal.precision >= 0.8, seasonal
    assert seasonal.recall >= 0.6, seasonal  # slots cannot flag before their third week
    # The plain EWMA cannot tell a weekly step from an anomaly: the seasonal baseline is what finds them.
    assert scores[("ewma", "weekly")].recall < seasonal.recall


def test_precision_recall_counts() -> None:
    flags = np.array([True, True, False, False])
    labels = np.array([True, False, True, False])
    assert observe.precision_recall(flags, labels) == (0.5, 0.5)
