"""Pure-Python twin of ``native/selectors.pyx``: the same classes, the same arithmetic, the same random stream.

Every selector keeps per-endpoint state (active requests, EWMA latency, health seen on the previous call, slow-start
ramp) and picks one endpoint per ``select(healthy, key)``. Randomness comes from a splitmix64 stream seeded at
construction (Steele, Lea & Flood, "Fast splittable pseudorandom number generators", OOPSLA 2014) rather than the
``random`` module, so the compiled module and this twin make identical choices for the same seed and inputs, which
is what the twin tests assert.

Slow start: when an endpoint turns healthy again its effective weight ramps linearly from ``SLOW_START_MIN_FRACTION``
of its weight to the full weight over ``slow_start`` seconds (nginx's ``slow_start`` server parameter, Envoy's
slow-start mode), so a cold backend is not flooded the moment it comes back.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence

MASK64 = (1 << 64) - 1
GOLDEN_GAMMA = 0x9E3779B97F4A7C15
FNV64_OFFSET = 0xCBF29CE484222325
FNV64_PRIME = 0x100000001B3
SLOW_START_MIN_FRACTION = 0.1
DEFAULT_EWMA_ALPHA = 0.3
# Latency cost floor for p2c_ewma so an endpoint with no samples yet (EWMA 0) still weighs its active requests.
EWMA_FLOOR_S = 1e-6


def mix64(z: int) -> int:
    """The splitmix64 finaliser: a bijective 64-bit mixer."""
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & MASK64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & MASK64
    return z ^ (z >> 31)


def fnv1a_64(data: bytes) -> int:
    h = FNV64_OFFSET
    for b in data:
        h = ((h ^ b) * FNV64_PRIME) & MASK64
    return h


class _Selector:
    algorithm = ""

    def __init__(
        self,
        weights: Sequence[float],
        slow_start: float = 0.0,
        seed: int = 0,
        clock: Callable[[], float] = time.monotonic,
        ewma_alpha: float = DEFAULT_EWMA_ALPHA,
    ) -> None:
        self.n_endpoints = n = len(weights)
        self._weights = [float(w) for w in weights]
        self._eff = list(self._weights)
        self._active = [0] * n
        self._ewma = [0.0] * n
        self._was_healthy = [True] * n
        self._recovered_at = [0.0] * n
        self._ramping = [False] * n
        self._n_ramping = 0
        self._slow_start = float(slow_start)
        self._clock = clock
        self._rng = seed & MASK64
        self._alpha = float(ewma_alpha)
        self._cursor = 0
        self._total = 0.0
        self._n_healthy = n

    # -- random stream ----------------------------------------------------------------------------------------
    def _next_u64(self) -> int:
        self._rng = (self._rng + GOLDEN_GAMMA) & MASK64
        return mix64(self._rng)

    def _next_float(self) -> float:
        return (self._next_u64() >> 11) * (1.0 / 9007199254740992.0)

    # -- health and slow start ----------------------------------------------------------------------------------
    def _refresh(self, healthy: Sequence[bool]) -> int:
        n = self.n_endpoints
        if len(healthy) != n:
            raise ValueError(f"healthy has {len(healthy)} entries, expected {n}")
        now = -1.0
        total = 0.0
        count = 0
        for i in range(n):
            if healthy[i]:
                if not self._was_healthy[i]:
                    self._was_healthy[i] = True
                    if self._slow_start > 0.0:
                        if now < 0.0:
                            now = self._clock()
                        self._recovered_at[i] = now
                        if not self._ramping[i]:
                            self._ramping[i] = True
                            self._n_ramping += 1
                w = self._weights[i]
                if self._ramping[i]:
                    if now < 0.0:
                        now = self._clock()
                    frac = (now - self._recovered_at[i]) / self._slow_start
                    if frac >= 1.0:
                        self._ramping[i] = False
                        self._n_ramping -= 1
                    else:
                        w *= max(SLOW_START_MIN_FRACTION, frac)
                self._eff[i] = w
                if w > 0.0:  # a weight of 0 drains the endpoint: healthy, but never chosen
                    total += w
                    count += 1
            else:
                self._was_healthy[i] = False
                self._eff[i] = 0.0
        self._total = total
        self._n_healthy = count
        return count

    def select(self, healthy: Sequence[bool], key: bytes | None = None) -> int:
        if self._refresh(healthy) == 0:
            return -1
        return self._pick(key)

    def _pick(self, key: bytes | None) -> int:
        raise NotImplementedError

    # -- request accounting ---------------------------------------------------------------------------------------
    def on_start(self, i: int) -> None:
        if not 0 <= i < self.n_endpoints:
            raise IndexError(i)
        self._active[i] += 1

    def on_finish(self, i: int, latency_s: float) -> None:
        if not 0 <= i < self.n_endpoints:
            raise IndexError(i)
        if self._active[i] > 0:
            self._active[i] -= 1
        if latency_s < 0.0:
            latency_s = 0.0
        if self._ewma[i] == 0.0:
            self._ewma[i] = latency_s
        else:
            self._ewma[i] += self._alpha * (latency_s - self._ewma[i])

    @property
    def active(self) -> list[int]:
        return list(self._active)

    @property
    def ewma_latency(self) -> list[float]:
        return list(self._ewma)

    @property
    def effective_weights(self) -> list[float]:
        """Weights as of the last ``select`` (0 for unhealthy endpoints, reduced while ramping up)."""
        return list(self._eff)

    # -- shared pickers -------------------------------------------------------------------------------------------
    def _pick_round_robin(self) -> int:
        n = self.n_endpoints
        # A ramping endpoint is taken with probability equal to its ramp fraction, else skipped this turn.
        for _ in range(2 * n):
            i = self._cursor
            self._cursor = (i + 1) % n
            eff = self._eff[i]
            if eff > 0.0:
                if not self._ramping[i] or self._next_float() * self._weights[i] < eff:
                    return i
        for i in range(n):  # every healthy endpoint lost its coin flips: take the first healthy one
            if self._eff[i] > 0.0:
                return i
        return -1


class RoundRobin(_Selector):
    algorithm = "round_robin"

    def _pick(self, key: bytes | None) -> int:
        return self._pick_round_robin()


class WeightedRoundRobin(_Selector):
    """nginx's smooth weighted round robin (ngx_http_upstream_get_peer, nginx commit 52327e0627f4)."""

    algorithm = "weighted_round_robin"

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self._current = [0.0] * self.n_endpoints

    def _pick(self, key: bytes | None) -> int:
        best = -1
        best_current = 0.0
        for i in range(self.n_endpoints):
            eff = self._eff[i]
            if eff > 0.0:
                c = self._current[i] + eff
                self._current[i] = c
                if best < 0 or c > best_current:
                    best = i
                    best_current = c
            else:
                self._current[i] = 0.0
        self._current[best] -= self._total
        return best


class LeastConnections(_Selector):
    """Fewest active requests per unit of weight; ties broken by rotating the starting point."""

    algorithm = "least_connections"

    def _pick(self, key: bytes | None) -> int:
        n = self.n_endpoints
        start = self._cursor
        self._cursor = (start + 1) % n
        best = -1
        best_cost = 0.0
        for k in range(n):
            i = (start + k) % n
            eff = self._eff[i]
            if eff > 0.0:
                cost = (self._active[i] + 1) / eff
                if best < 0 or cost < best_cost:
                    best = i
                    best_cost = cost
        return best


class IpHash(_Selector):
    """Weighted rendezvous hashing (Thaler & Ravishankar 1998; weights as in Schindelhauer & Schomaker 2005).

    Each healthy endpoint scores ``-w / ln(u)`` where ``u`` in (0, 1) is a hash of (key, endpoint); the highest
    wins. When an endpoint leaves, only the keys it owned move; every other key keeps its endpoint. Without a key
    the selector falls back to round robin.
    """

    algorithm = "ip_hash"

    def _pick(self, key: bytes | None) -> int:
        if key is None:
            return self._pick_round_robin()
        kh = fnv1a_64(key)
        best = -1
        best_score = 0.0
        for i in range(self.n_endpoints):
            eff = self._eff[i]
            if eff > 0.0:
                h = mix64(kh ^ ((i + 1) * GOLDEN_GAMMA & MASK64))
                u = ((h >> 11) + 0.5) * (1.0 / 9007199254740992.0)
                score = -eff / math.log(u)
                if best < 0 or score > best_score:
                    best = i
                    best_score = score
        return best


class Random(_Selector):
    """Weighted random choice over healthy endpoints."""

    algorithm = "random"

    def _pick(self, key: bytes | None) -> int:
        r = self._next_float() * self._total
        last = -1
        for i in range(self.n_endpoints):
            eff = self._eff[i]
            if eff > 0.0:
                last = i
                if r < eff:
                    return i
                r -= eff
        return last


class P2CEwma(_Selector):
    """Power of two choices (Mitzenmacher 2001) over cost = EWMA latency x (active + 1) / weight.

    Two distinct healthy endpoints are drawn uniformly and the cheaper one is taken, as Finagle's and Linkerd's
    P2C-EWMA balancers do; the EWMA is updated by ``on_finish``.
    """

    algorithm = "p2c_ewma"

    def _cost(self, i: int) -> float:
        ewma = self._ewma[i]
        if ewma < EWMA_FLOOR_S:
            ewma = EWMA_FLOOR_S
        return ewma * (self._active[i] + 1) / self._eff[i]

    def _nth_healthy(self, k: int) -> int:
        for i in range(self.n_endpoints):
            if self._eff[i] > 0.0:
                if k == 0:
                    return i
                k -= 1
        return -1

    def _pick(self, key: bytes | None) -> int:
        m = self._n_healthy
        if m == 1:
            return self._nth_healthy(0)
        ka = self._next_u64() % m
        kb = self._next_u64() % (m - 1)
        if kb >= ka:
            kb += 1
        a = self._nth_healthy(ka)
        b = self._nth_healthy(kb)
        return a if self._cost(a) <= self._cost(b) else b


SELECTORS: dict[str, type[_Selector]] = {
    cls.algorithm: cls for cls in (RoundRobin, WeightedRoundRobin, LeastConnections, IpHash, Random, P2CEwma)
}
