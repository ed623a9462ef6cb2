"""References for ``nexus_fast.kernels.anomaly``: the same recurrences, one sample at a time, on Python floats."""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence

MIN_SCALE = 1e-12


class Ewma:
    def __init__(self, alpha: float, threshold: float, warmup: int) -> None:
        self.alpha, self.threshold, self.warmup = alpha, threshold, warmup
        self.mean, self.var, self.n = 0.0, 0.0, 0

    def step(self, x: float) -> tuple[float, bool]:
        if self.n == 0:
            self.mean, self.var, self.n = x, 0.0, 1
            return 0.0, False
        sd = max(math.sqrt(self.var), MIN_SCALE)
        score = (x - self.mean) / sd
        flag = self.n >= self.warmup and abs(score) > self.threshold
        if flag:  # winsorise before learning from it
            x = self.mean + math.copysign(self.threshold * sd, score)
        diff = x - self.mean
        self.mean += self.alpha * diff
        self.var = (1 - self.alpha) * (self.var + self.alpha * diff * diff)
        self.n += 1
        return score, flag


def ewma(values: Sequence[float], alpha: float, threshold: float, warmup: int) -> tuple[list[float], list[bool]]:
    det = Ewma(alpha, threshold, warmup)
    out = [det.step(x) for x in values]
    return [s for s, _ in out], [f for _, f in out]


def mad(values: Sequence[float], window: int, threshold: float, warmup: int) -> tuple[list[float], list[bool]]:
    history: list[float] = []
    scores, flags = [], []
    for x in values:
        recent = history[-window:]
        score = 0.0
        if recent:
            med = statistics.median(recent)
            devs = [abs(v - med) for v in recent]
            m = statistics.median(devs)
            if m > 0:
                score = 0.6745 * (x - med) / m
            else:
                score = (x - med) / max(1.253314 * statistics.fmean(devs), MIN_SCALE)
        scores.append(score)
        flags.append(len(recent) >= warmup and abs(score) > threshold)
        history.append(x)
    return scores, flags


def seasonal(
    times: Sequence[float],
    values: Sequence[float],
    n_slots: int,
    slot_seconds: float,
    alpha: float,
    var_alpha: float,
    threshold: float,
    warmup: int,
) -> tuple[list[float], list[bool]]:
    means = [0.0] * n_slots
    counts = [0] * n_slots
    var, seen = 0.0, 0  # residual variance shared by all slots, residuals seen
    scores, flags = [], []
    for t, x in zip(times, values, strict=True):
        slot = math.floor(t / slot_seconds) % n_slots
        if counts[slot] == 0:
            means[slot], counts[slot] = x, 1
            scores.append(0.0)
            flags.append(False)
            continue
        sd = max(math.sqrt(var), MIN_SCALE)
        r = x - means[slot]
        score = r / sd
        flag = counts[slot] >= warmup and seen >= 20 and abs(score) > threshold
        if flag:
            r = math.copysign(threshold * sd, score)
        means[slot] += alpha * r
        counts[slot] += 1
        var = r * r if seen == 0 else var + var_alpha * (r * r - var)
        seen += 1
        scores.append(score)
        flags.append(flag)
    return scores, flags
