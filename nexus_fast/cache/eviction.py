"""Byte-budgeted caches: ``ScoredCache`` (GDSF-style score with decayed frequency, batch eviction) and ``LRUCache``.

``ScoredCache`` keeps per-entry statistics in NumPy arrays (decayed access count, last access, size, fetch cost).
A hit costs a dict lookup and two array writes; nothing is scored per request. When an insert takes the cache over
its byte budget, one call of the Numba kernel ``nexus_fast.kernels.eviction.eviction_candidates`` ranks the live
entries and the lowest-scoring ones are dropped until the cache is back under a low watermark
(``budget x (1 - headroom)``), so the scoring cost is paid once per batch rather than once per request.

``LRUCache`` is the baseline (an ``OrderedDict``). ``zipf_trace``, ``scan_polluted_trace`` and ``compare`` generate
the workloads and hit-ratio table that ``python -m bench kernels`` prints and the tests check.
"""

from __future__ import annotations

import math
import time
from collections import OrderedDict
from collections.abc import Callable, Hashable, Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np

from nexus_fast.kernels.eviction import eviction_candidates


@dataclass
class CacheStats:
    hits: int = 0
    misses: int = 0
    evictions: int = 0
    eviction_batches: int = 0

    @property
    def hit_ratio(self) -> float:
        total = self.hits + self.misses
        return self.hits / total if total else 0.0


class LRUCache:
    """Least-recently-used eviction under a byte budget."""

    def __init__(self, budget_bytes: int) -> None:
        if budget_bytes <= 0:
            raise ValueError("budget_bytes must be > 0")
        self.budget_bytes = budget_bytes
        self.used_bytes = 0
        self._entries: OrderedDict[Hashable, tuple[Any, int]] = OrderedDict()
        self.stats = CacheStats()

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, key: Hashable) -> bool:
        return key in self._entries

    def get(self, key: Hashable) -> Any:
        entry = self._entries.get(key)
        if entry is None:
            self.stats.misses += 1
            return None
        self._entries.move_to_end(key)
        self.stats.hits += 1
        return entry[0]

    def put(self, key: Hashable, value: Any, size: int | None = None, cost: float = 1.0) -> bool:
        nbytes = len(value) if size is None else int(size)
        if nbytes > self.budget_bytes:
            self.delete(key)  # the old value is stale either way
            return False
        old = self._entries.pop(key, None)
        if old is not None:
            self.used_bytes -= old[1]
        self._entries[key] = (value, nbytes)
        self.used_bytes += nbytes
        while self.used_bytes > self.budget_bytes:
            _, (_, freed) = self._entries.popitem(last=False)
            self.used_bytes -= freed
            self.stats.evictions += 1
        return True

    def delete(self, key: Hashable) -> bool:
        """Drop ``key`` (an invalidation); False if it was not cached."""
        old = self._entries.pop(key, None)
        if old is None:
            return False
        self.used_bytes -= old[1]
        return True


class ScoredCache:
    """Eviction by ``decayed frequency x cost / size`` under a byte budget, evicting in batches.

    ``half_life`` is in the units of ``clock`` (seconds with the default ``time.monotonic``; a request counter in
    simulations). ``headroom`` is the fraction of the budget freed per eviction batch.
    """

    def __init__(
        self,
        budget_bytes: int,
        half_life: float = 300.0,
        headroom: float = 0.05,
        clock: Callable[[], float] = time.monotonic,
        initial_capacity: int = 1024,
    ) -> None:
        if budget_bytes <= 0:
            raise ValueError("budget_bytes must be > 0")
        if not half_life > 0.0:
            raise ValueError("half_life must be > 0")
        if not 0.0 <= headroom < 1.0:
            raise ValueError("headroom must be in [0, 1)")
        self.budget_bytes = budget_bytes
        self.half_life = float(half_life)
        self.headroom = headroom
        self.used_bytes = 0
        self.stats = CacheStats()
        self._clock = clock
        self._decay_per_unit = math.log(2.0) / self.half_life
        cap = max(16, initial_capacity)
        self._count = np.zeros(cap)
        self._last = np.zeros(cap)
        self._size = np.ones(cap)
        self._cost = np.ones(cap)
        self._live = np.zeros(cap, dtype=np.bool_)
        self._values: list[Any] = [None] * cap
        self._keys: list[Hashable] = [None] * cap
        self._slots: dict[Hashable, int] = {}
        self._free: list[int] = list(range(cap - 1, -1, -1))

    def __len__(self) -> int:
        return len(self._slots)

    def __contains__(self, key: Hashable) -> bool:
        return key in self._slots

    def _touch(self, slot: int, now: float) -> None:
        age = now - self._last[slot]
        self._count[slot] = self._count[slot] * math.exp(-self._decay_per_unit * age) + 1.0 if age > 0 else (
            self._count[slot] + 1.0
        )
        self._last[slot] = now

    def get(self, key: Hashable, now: float | None = None) -> Any:
        slot = self._slots.get(key)
        if slot is None:
            self.stats.misses += 1
            return None
        self._touch(slot, self._clock() if now is None else now)
        self.stats.hits += 1
        return self._values[slot]

    def _grow(self) -> None:
        old = self._count.size
        new = old * 2
        self._count = np.concatenate([self._count, np.zeros(old)])
        self._last = np.concatenate([self._last, np.zeros(old)])
        self._size = np.concatenate([self._size, np.ones(old)])
        self._cost = np.concatenate([self._cost, np.ones(old)])
        self._live = np.concatenate([self._live, np.zeros(old, dtype=np.bool_)])
        self._values.extend([None] * old)
        self._keys.extend([None] * old)
        self._free.extend(range(new - 1, old - 1, -1))

    def put(
        self, key: Hashable, value: Any, size: int | None = None, cost: float = 1.0, now: float | None = None
    ) -> bool:
        """Store ``value`` (``size`` bytes, default ``len(value)``; ``cost`` to fetch it again). False if too big."""
        nbytes = len(value) if size is None else int(size)
        if nbytes > self.budget_bytes:
            self.delete(key)  # the old value is stale either way
            return False
        t = self._clock() if now is None else now
        slot = self._slots.get(key)
        if slot is None:
            if not self._free:
                self._grow()
            slot = self._free.pop()
            self._slots[key] = slot
            self._keys[slot] = key
            self._live[slot] = True
            self._count[slot] = 1.0
            self._last[slot] = t
        else:
            self.used_bytes -= int(self._size[slot])
            self._touch(slot, t)
        self._values[slot] = value
        self._size[slot] = max(1, nbytes)
        self._cost[slot] = cost
        self.used_bytes += max(1, nbytes)
        if self.used_bytes > self.budget_bytes:
            self._evict(t, protect=slot)
        return True

    def delete(self, key: Hashable) -> bool:
        """Drop ``key`` (an invalidation); False if it was not cached."""
        slot = self._slots.get(key)
        if slot is None:
            return False
        self._drop(slot)
        self.stats.evictions -= 1  # an invalidation is not an eviction
        return True

    def _evict(self, now: float, protect: int) -> None:
        target = self.budget_bytes * (1.0 - self.headroom)
        # The entry just inserted is exempt from this batch: it has not had a chance to be hit yet.
        self._live[protect] = False
        try:
            while self.used_bytes > target and self._slots:
                mean = self.used_bytes / max(1, len(self._slots))
                k = min(len(self._slots), int((self.used_bytes - target) / mean * 1.5) + 1)
                victims = eviction_candidates(
                    self._count, self._last, self._size, self._cost, now, self.half_life, k, self._live
                )
                if victims.size == 0:
                    break
                self.stats.eviction_batches += 1
                for slot in victims.tolist():
                    self._drop(slot)
                    if self.used_bytes <= target:
                        break
        finally:
            if self._keys[protect] is not None:
                self._live[protect] = True
        if self.used_bytes > self.budget_bytes:  # only the protected entry is left and it alone is over budget
            self._drop(protect)

    def _drop(self, slot: int) -> None:
        key = self._keys[slot]
        del self._slots[key]
        self.used_bytes -= int(self._size[slot])
        self._keys[slot] = None
        self._values[slot] = None
        self._live[slot] = False
        self._size[slot] = 1.0
        self._free.append(slot)
        self.stats.evictions += 1


# ------------------------------------------------------------------------------------------------ workloads --


def zipf_trace(n_keys: int, n_requests: int, alpha: float, seed: int = 0) -> np.ndarray:
    """Key ids drawn with P(rank r) proportional to 1 / r**alpha (ranks shuffled over ids)."""
    rng = np.random.default_rng(seed)
    p = 1.0 / np.arange(1, n_keys + 1, dtype=np.float64) ** alpha
    p /= p.sum()
    ranks = rng.choice(n_keys, size=n_requests, p=p)
    return rng.permutation(n_keys)[ranks]


def scan_polluted_trace(
    n_keys: int, n_requests: int, alpha: float = 0.9, scan_fraction: float = 0.3, scan_length: int = 2000, seed: int = 0
) -> np.ndarray:
    """A Zipf trace where ``scan_fraction`` of requests are sequential scans over keys read once (ids >= n_keys)."""
    rng = np.random.default_rng(seed)
    base = zipf_trace(n_keys, n_requests, alpha, seed)
    out = base.copy()
    n_scan = int(n_requests * scan_fraction)
    next_id = n_keys
    done = 0
    while done < n_scan:
        length = min(scan_length, n_scan - done)
        start = int(rng.integers(0, max(1, n_requests - length)))
        out[start : start + length] = np.arange(next_id, next_id + length)
        next_id += length
        done += length
    return out


def key_sizes(n_ids: int, seed: int = 0, median: int = 1024) -> np.ndarray:
    """Lognormal value sizes (bytes) per key id, clipped to [64, 64 KiB]: many small values, a few large."""
    rng = np.random.default_rng(seed + 1)
    return np.clip(rng.lognormal(math.log(median), 1.0, n_ids), 64, 65536).astype(np.int64)


def simulate(cache: LRUCache | ScoredCache, trace: Iterable[int], sizes: np.ndarray) -> float:
    """Replay ``trace`` (read-through: a miss inserts the key); the hit ratio."""
    return replay(cache, trace, sizes)[0]


def replay(cache: LRUCache | ScoredCache, trace: Iterable[int], sizes: np.ndarray) -> tuple[float, float]:
    """Replay ``trace`` read-through; (hit ratio, byte hit ratio: bytes served from cache / bytes requested)."""
    scored = isinstance(cache, ScoredCache)
    hit_bytes = 0
    total_bytes = 0
    for t, key in enumerate(trace):
        k = int(key)
        size = int(sizes[k])
        total_bytes += size
        if scored:
            hit = cache.get(k, now=float(t)) is not None  # type: ignore[call-arg]
        else:
            hit = cache.get(k) is not None
        if hit:
            hit_bytes += size
        elif scored:
            cache.put(k, True, size=size, now=float(t))  # type: ignore[call-arg]
        else:
            cache.put(k, True, size=size)
    return cache.stats.hit_ratio, (hit_bytes / total_bytes if total_bytes else 0.0)


@dataclass(frozen=True)
class HitRatioRow:
    workload: str
    budget_bytes: int
    lru: float
    scored: float
    lru_byte_hit: float = 0.0
    scored_byte_hit: float = 0.0

    @property
    def gain(self) -> float:
        return self.scored - self.lru


@dataclass(frozen=True)
class Workload:
    name: str
    trace: np.ndarray  # key ids, one per request
    sizes: np.ndarray  # value size in bytes per key id
    budget_bytes: int


def workloads(
    n_keys: int = 5000,
    n_requests: int = 100_000,
    alphas: Iterable[float] = (0.7, 0.9, 1.0, 1.2),
    budget_fraction: float = 0.05,
    seed: int = 0,
    equal_sizes: bool = True,
) -> list[Workload]:
    """The comparison workloads: Zipf at each alpha, Zipf 0.9 with 30% one-touch scans, and (``equal_sizes``) the
    last two again with every value 1 KiB. The budget is ``budget_fraction`` of the bytes of the ``n_keys`` values."""
    scans = scan_polluted_trace(n_keys, n_requests, 0.9, 0.3, 2000, seed)
    specs: list[tuple[str, np.ndarray, bool]] = [
        (f"zipf alpha={a:g}", zipf_trace(n_keys, n_requests, a, seed), False) for a in alphas
    ]
    specs.append(("zipf 0.9 + 30% scans", scans, False))
    if equal_sizes:
        # Every value the same size: the gain left is frequency and recency alone, not a preference for small values.
        specs.append(("zipf 0.9, equal sizes", zipf_trace(n_keys, n_requests, 0.9, seed), True))
        specs.append(("scans, equal sizes", scans, True))
    out = []
    for name, trace, same_size in specs:
        extra = max(0, int(trace.max()) + 1 - n_keys)  # scan keys beyond the Zipf population
        if same_size:
            sizes = np.full(n_keys + extra, 1024, dtype=np.int64)
        else:
            sizes = np.concatenate([key_sizes(n_keys, seed), key_sizes(extra, seed + 7)])
        out.append(Workload(name, trace, sizes, int(sizes[:n_keys].sum() * budget_fraction)))
    return out


def compare(
    n_keys: int = 5000,
    n_requests: int = 100_000,
    alphas: Iterable[float] = (0.7, 0.9, 1.0, 1.2),
    budget_fraction: float = 0.05,
    half_life: float | None = None,
    seed: int = 0,
    equal_sizes: bool = True,
) -> list[HitRatioRow]:
    """Hit ratio of LRU and the scored cache at the same byte budget on ``workloads(...)``.

    Time is the request index, and ``half_life`` defaults to ``4 x n_keys`` requests.
    """
    hl = float(half_life if half_life is not None else 4 * n_keys)
    rows = []
    for w in workloads(n_keys, n_requests, alphas, budget_fraction, seed, equal_sizes):
        lru, lru_bytes = replay(LRUCache(w.budget_bytes), w.trace, w.sizes)
        scored, scored_bytes = replay(
            ScoredCache(w.budget_bytes, half_life=hl, clock=lambda: 0.0), w.trace, w.sizes
        )
        rows.append(HitRatioRow(w.name, w.budget_bytes, lru, scored, lru_bytes, scored_bytes))
    return rows
