"""The arithmetic of a benchmark report: medians, spread, and ratios between targets measured in the same run.

Why medians and the full range rather than means and standard deviations: a run has only a few rounds (2 in
``--quick``, more in full mode) on a machine shared with other work, so one disturbed round would drag a mean; the
median ignores it and the range (min to max, also given relative to the median) shows honestly how much the
rounds disagreed.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Iterable
from dataclasses import dataclass


@dataclass(frozen=True)
class Summary:
    """The rounds of one figure (for example the tps of one target in one scenario)."""

    values: tuple[float, ...]
    median: float
    minimum: float
    maximum: float

    @property
    def spread(self) -> float:
        """(max - min) / median: 0.08 means the rounds span 8% of the median. NaN when the median is 0."""
        if self.median == 0:
            return math.nan
        return (self.maximum - self.minimum) / abs(self.median)

    def as_dict(self) -> dict[str, object]:
        return {"values": list(self.values), "median": self.median, "min": self.minimum, "max": self.maximum,
                "spread": None if math.isnan(self.spread) else self.spread, "n": len(self.values)}


def summarize(values: Iterable[float | None]) -> Summary | None:
    """Median and range of the finite values; None when no round produced a number."""
    kept = tuple(float(v) for v in values if v is not None and math.isfinite(v))
    if not kept:
        return None
    return Summary(kept, statistics.median(kept), min(kept), max(kept))


def ratio(value: float | None, reference: float | None) -> float | None:
    """value / reference, or None when either is missing or the reference is 0 (no meaningful ratio)."""
    if value is None or reference is None or reference == 0 or not math.isfinite(value) \
            or not math.isfinite(reference):
        return None
    return value / reference


def percentile(values: list[float], fraction: float) -> float:
    """The nearest-rank percentile (``fraction`` in (0, 1]): the smallest value with at least that share of the
    values at or below it. No interpolation, so the p99 is always a latency some transaction really had."""
    if not values:
        raise ValueError("percentile of no values")
    if not 0 < fraction <= 1:
        raise ValueError(f"fraction {fraction} is not in (0, 1]")
    ordered = sorted(values)
    rank = math.ceil(fraction * len(ordered))
    return ordered[max(rank, 1) - 1]


def format_ratio(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.2f}x"
