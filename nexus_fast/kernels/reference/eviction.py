"""References for ``nexus_fast.kernels.eviction``: the score formula per entry, then a full sort."""

from __future__ import annotations

from collections.abc import Sequence


def gdsf_score(count: float, last_access: float, size: float, cost: float, now: float, half_life: float) -> float:
    age = max(0.0, now - last_access)
    return count * 2.0 ** (-age / half_life) * cost / size


def gdsf_scores(
    count: Sequence[float],
    last_access: Sequence[float],
    size: Sequence[float],
    cost: Sequence[float],
    now: float,
    half_life: float,
) -> list[float]:
    return [
        gdsf_score(c, la, s, co, now, half_life) for c, la, s, co in zip(count, last_access, size, cost, strict=True)
    ]


def lowest_k(scores: Sequence[float], k: int, live: Sequence[bool] | None = None) -> list[int]:
    flags = live if live is not None else [True] * len(scores)
    ranked = sorted((s, i) for i, (s, f) in enumerate(zip(scores, flags, strict=True)) if f)
    return [i for _, i in ranked[:k]]


def eviction_candidates(
    count: Sequence[float],
    last_access: Sequence[float],
    size: Sequence[float],
    cost: Sequence[float],
    now: float,
    half_life: float,
    k: int,
    live: Sequence[bool] | None = None,
) -> list[int]:
    return lowest_k(gdsf_scores(count, last_access, size, cost, now, half_life), k, live)


__all__ = ["eviction_candidates", "gdsf_score", "gdsf_scores", "lowest_k"]
