"""Anomaly detection on metric streams: stateful detectors over the Numba kernels, and their evaluation.

Each detector keeps its state between calls, so a metrics loop feeds it whatever arrived since the last scrape::

    det = EwmaDetector(alpha=0.1, threshold=4.0)
    scores, flags = det.update(latest_p99_values)

``EwmaDetector`` suits a level with noise, ``MadDetector`` is robust to bursts of outliers in its window,
``SeasonalDetector`` compares a sample with the same slot of the day or week (``n_slots=168,
slot_seconds=3600`` is hour-of-week). ``labelled_series`` makes synthetic series with known anomalies and
``evaluate`` reports each detector's precision and recall on them (``python -m bench kernels`` prints it).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from nexus_fast.kernels import anomaly as _k


class EwmaDetector:
    """EWMA mean/variance z-score; flags ``|z| > threshold`` after ``warmup`` samples."""

    def __init__(self, alpha: float = 0.1, threshold: float = 4.0, warmup: int = 20) -> None:
        self.alpha, self.threshold, self.warmup = alpha, threshold, warmup
        self.state = _k.new_ewma_state()

    @property
    def mean(self) -> float:
        return float(self.state[0])

    @property
    def std(self) -> float:
        return math.sqrt(float(self.state[1]))

    def update(self, values: Any) -> tuple[np.ndarray, np.ndarray]:
        return _k.ewma_scores(values, self.state, self.alpha, self.threshold, self.warmup)


class MadDetector:
    """Rolling median/MAD modified z-score over the last ``window`` samples."""

    def __init__(self, window: int = 60, threshold: float = 3.5, warmup: int = 10) -> None:
        self.window, self.threshold, self.warmup = window, threshold, warmup
        self.state = _k.new_mad_state(window)

    def update(self, values: Any) -> tuple[np.ndarray, np.ndarray]:
        return _k.mad_scores(values, self.state, self.threshold, self.warmup)


class SeasonalDetector:
    """An EWMA baseline per season slot (hour of day: ``n_slots=24``; hour of week: ``n_slots=168``) and one
    residual variance shared by all slots."""

    def __init__(
        self,
        n_slots: int = 168,
        slot_seconds: float = 3600.0,
        alpha: float = 0.3,
        threshold: float = 4.0,
        warmup: int = 2,
        var_alpha: float = 0.02,
    ) -> None:
        self.n_slots, self.slot_seconds = n_slots, slot_seconds
        self.alpha, self.threshold, self.warmup, self.var_alpha = alpha, threshold, warmup, var_alpha
        self.state = _k.new_seasonal_state(n_slots)

    def update(self, times: Any, values: Any) -> tuple[np.ndarray, np.ndarray]:
        return _k.seasonal_scores(
            times, values, self.state, self.slot_seconds, self.alpha, self.threshold, self.warmup, self.var_alpha
        )


# ------------------------------------------------------------------------------------------------ evaluation --


@dataclass(frozen=True)
class LabelledSeries:
    times: np.ndarray
    values: np.ndarray
    labels: np.ndarray  # True where an anomaly was injected


def labelled_series(kind: str, seed: int = 0) -> LabelledSeries:
    """Synthetic metric series with injected spikes (1-2% of samples, 6-10 noise sigmas, random sign).

    ``"level"``: a slowly drifting level with Gaussian noise, one sample a minute for a week. ``"weekly"``: hourly
    samples for ten weeks of a business-hours pattern (busy 08:00-18:00 on weekdays, quiet otherwise), whose steps
    a plain EWMA would mistake for anomalies.
    """
    rng = np.random.default_rng(seed)
    if kind == "level":
        n, step, sigma = 7 * 1440, 60.0, 2.0
        times = np.arange(n) * step
        drift = np.cumsum(rng.normal(0.0, 0.02, n))
        base = 100.0 + drift + 5.0 * np.sin(2 * np.pi * times / 86400.0)
        rate = 0.01
    elif kind == "weekly":
        n, step, sigma = 10 * 168, 3600.0, 3.0
        times = np.arange(n) * step
        hour = (times // 3600).astype(np.int64)
        hour_of_day, day = hour % 24, (hour // 24) % 7
        busy = (day < 5) & (hour_of_day >= 8) & (hour_of_day < 18)
        base = np.where(busy, 400.0, 60.0) + 20.0 * np.sin(2 * np.pi * hour_of_day / 24.0)
        rate = 0.02
    else:
        raise ValueError(f"unknown series kind {kind!r}; expected 'level' or 'weekly'")
    values = base + rng.normal(0.0, sigma, n)
    labels = rng.random(n) < rate
    labels[:50] = False  # leave the warm-up clean
    magnitude = rng.uniform(6.0, 10.0, n) * sigma * rng.choice([-1.0, 1.0], n)
    values = np.where(labels, values + magnitude, values)
    return LabelledSeries(times, values, labels)


def precision_recall(flags: np.ndarray, labels: np.ndarray) -> tuple[float, float]:
    tp = int(np.sum(flags & labels))
    fp = int(np.sum(flags & ~labels))
    fn = int(np.sum(~flags & labels))
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    return precision, recall


@dataclass(frozen=True)
class DetectorScore:
    detector: str
    series: str
    precision: float
    recall: float
    anomalies: int


def evaluate(seed: int = 0) -> list[DetectorScore]:
    """Precision and recall of each detector on the labelled series it is meant for (and EWMA on "weekly")."""
    level = labelled_series("level", seed)
    weekly = labelled_series("weekly", seed)
    rows = []
    for name, series, flags in (
        ("ewma", "level", EwmaDetector().update(level.values)[1]),
        ("mad", "level", MadDetector().update(level.values)[1]),
        ("seasonal", "weekly", SeasonalDetector().update(weekly.times, weekly.values)[1]),
        ("ewma", "weekly", EwmaDetector().update(weekly.values)[1]),
    ):
        labels = level.labels if series == "level" else weekly.labels
        p, r = precision_recall(flags, labels)
        rows.append(DetectorScore(name, series, p, r, int(labels.sum())))
    return rows
