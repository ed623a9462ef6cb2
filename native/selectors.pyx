# cython: language_level=3
"""Compiled load-balancing selectors; the pure-Python twin is ``nexus_fast.balance._selectors_py``.

Same classes, arithmetic and splitmix64 random stream as the twin (see its docstring for the algorithms and the
slow-start rule), so both make identical choices for the same seed and inputs. Per-endpoint state lives in C arrays;
``select`` touches Python objects only to read the ``healthy`` flags (and the clock while an endpoint ramps up).
"""

from libc.math cimport log
from libc.stdint cimport uint64_t
from libc.stdlib cimport calloc, free
from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_GET_SIZE

import time

cdef uint64_t GOLDEN_GAMMA = 0x9E3779B97F4A7C15ULL
cdef uint64_t FNV64_OFFSET = 0xCBF29CE484222325ULL
cdef uint64_t FNV64_PRIME = 0x100000001B3ULL
SLOW_START_MIN_FRACTION = 0.1
DEFAULT_EWMA_ALPHA = 0.3
EWMA_FLOOR_S = 1e-6
cdef double C_SLOW_START_MIN_FRACTION = 0.1
cdef double C_EWMA_FLOOR_S = 1e-6
cdef double INV_2_53 = 1.0 / 9007199254740992.0


cdef inline uint64_t _mix64(uint64_t z) noexcept nogil:
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL
    return z ^ (z >> 31)


def mix64(z):
    """The splitmix64 finaliser: a bijective 64-bit mixer."""
    return _mix64(<uint64_t>z)


cdef inline uint64_t _fnv1a_64(const unsigned char* data, Py_ssize_t n) noexcept nogil:
    cdef uint64_t h = FNV64_OFFSET
    cdef Py_ssize_t i
    for i in range(n):
        h = (h ^ data[i]) * FNV64_PRIME
    return h


def fnv1a_64(bytes data):
    return _fnv1a_64(<const unsigned char*>PyBytes_AS_STRING(data), PyBytes_GET_SIZE(data))


cdef class _Selector:
    cdef readonly int n_endpoints
    cdef double* _weights
    cdef double* _eff
    cdef long* _active
    cdef double* _ewma
    cdef char* _was_healthy
    cdef double* _recovered_at
    cdef char* _ramping
    cdef int _n_ramping
    cdef double _slow_start
    cdef object _clock
    cdef uint64_t _rng
    cdef double _alpha
    cdef int _cursor
    cdef double _total
    cdef int _n_healthy

    algorithm = ""

    def __cinit__(self, weights, double slow_start=0.0, seed=0, clock=time.monotonic,
                  double ewma_alpha=DEFAULT_EWMA_ALPHA):
        cdef int n = len(weights)
        cdef int i
        self.n_endpoints = n
        self._weights = <double*>calloc(n + 1, sizeof(double))
        self._eff = <double*>calloc(n + 1, sizeof(double))
        self._active = <long*>calloc(n + 1, sizeof(long))
        self._ewma = <double*>calloc(n + 1, sizeof(double))
        self._was_healthy = <char*>calloc(n + 1, sizeof(char))
        self._recovered_at = <double*>calloc(n + 1, sizeof(double))
        self._ramping = <char*>calloc(n + 1, sizeof(char))
        if (not self._weights or not self._eff or not self._active or not self._ewma or not self._was_healthy
                or not self._recovered_at or not self._ramping):
            raise MemoryError()
        for i in range(n):
            self._weights[i] = float(weights[i])
            self._eff[i] = self._weights[i]
            self._was_healthy[i] = 1
        self._n_ramping = 0
        self._slow_start = slow_start
        self._clock = clock
        self._rng = <uint64_t>(seed & 0xFFFFFFFFFFFFFFFF)
        self._alpha = ewma_alpha
        self._cursor = 0
        self._total = 0.0
        self._n_healthy = n

    def __dealloc__(self):
        free(self._weights)
        free(self._eff)
        free(self._active)
        free(self._ewma)
        free(self._was_healthy)
        free(self._recovered_at)
        free(self._ramping)

    cdef inline uint64_t _next_u64(self) noexcept:
        self._rng += GOLDEN_GAMMA
        return _mix64(self._rng)

    cdef inline double _next_float(self) noexcept:
        return (self._next_u64() >> 11) * INV_2_53

    cdef int _refresh(self, healthy) except -1:
        cdef int n = self.n_endpoints
        cdef int i, count = 0
        cdef double now = -1.0, total = 0.0, w, frac
        cdef bint h
        if len(healthy) != n:
            raise ValueError(f"healthy has {len(healthy)} entries, expected {n}")
        for i in range(n):
            h = healthy[i]
            if h:
                if not self._was_healthy[i]:
                    self._was_healthy[i] = 1
                    if self._slow_start > 0.0:
                        if now < 0.0:
                            now = self._clock()
                        self._recovered_at[i] = now
                        if not self._ramping[i]:
                            self._ramping[i] = 1
                            self._n_ramping += 1
                w = self._weights[i]
                if self._ramping[i]:
                    if now < 0.0:
                        now = self._clock()
                    frac = (now - self._recovered_at[i]) / self._slow_start
                    if frac >= 1.0:
                        self._ramping[i] = 0
                        self._n_ramping -= 1
                    else:
                        w *= frac if frac > C_SLOW_START_MIN_FRACTION else C_SLOW_START_MIN_FRACTION
                self._eff[i] = w
                if w > 0.0:  # a weight of 0 drains the endpoint: healthy, but never chosen
                    total += w
                    count += 1
            else:
                self._was_healthy[i] = 0
                self._eff[i] = 0.0
        self._total = total
        self._n_healthy = count
        return count

    def select(self, healthy, key=None):
        if self._refresh(healthy) == 0:
            return -1
        return self._pick(key)

    cdef int _pick(self, object key) except -2:
        raise NotImplementedError

    def on_start(self, int i):
        if i < 0 or i >= self.n_endpoints:
            raise IndexError(i)
        self._active[i] += 1

    def on_finish(self, int i, double latency_s):
        if i < 0 or i >= self.n_endpoints:
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
    def active(self):
        return [self._active[i] for i in range(self.n_endpoints)]

    @property
    def ewma_latency(self):
        return [self._ewma[i] for i in range(self.n_endpoints)]

    @property
    def effective_weights(self):
        return [self._eff[i] for i in range(self.n_endpoints)]

    cdef int _pick_round_robin(self) noexcept:
        cdef int n = self.n_endpoints
        cdef int i, k
        cdef double eff
        for k in range(2 * n):
            i = self._cursor
            self._cursor = (i + 1) % n
            eff = self._eff[i]
            if eff > 0.0:
                if not self._ramping[i] or self._next_float() * self._weights[i] < eff:
                    return i
        for i in range(n):
            if self._eff[i] > 0.0:
                return i
        return -1


cdef class RoundRobin(_Selector):
    algorithm = "round_robin"

    cdef int _pick(self, object key) except -2:
        return self._pick_round_robin()


cdef class WeightedRoundRobin(_Selector):
    algorithm = "weighted_round_robin"
    cdef double* _current

    def __cinit__(self, *args, **kwargs):
        self._current = <double*>calloc(self.n_endpoints + 1, sizeof(double))
        if not self._current:
            raise MemoryError()

    def __dealloc__(self):
        free(self._current)

    cdef int _pick(self, object key) except -2:
        cdef int i, best = -1
        cdef double eff, c, best_current = 0.0
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


cdef class LeastConnections(_Selector):
    algorithm = "least_connections"

    cdef int _pick(self, object key) except -2:
        cdef int n = self.n_endpoints
        cdef int start = self._cursor
        cdef int k, i, best = -1
        cdef double eff, cost, best_cost = 0.0
        self._cursor = (start + 1) % n
        for k in range(n):
            i = (start + k) % n
            eff = self._eff[i]
            if eff > 0.0:
                cost = (self._active[i] + 1) / eff
                if best < 0 or cost < best_cost:
                    best = i
                    best_cost = cost
        return best


cdef class IpHash(_Selector):
    algorithm = "ip_hash"

    cdef int _pick(self, object key) except -2:
        if key is None:
            return self._pick_round_robin()
        cdef const unsigned char[:] view
        cdef uint64_t kh, h
        if isinstance(key, bytes):
            kh = _fnv1a_64(<const unsigned char*>PyBytes_AS_STRING(key), PyBytes_GET_SIZE(key))
        else:
            view = key
            kh = _fnv1a_64(&view[0], view.shape[0]) if view.shape[0] else FNV64_OFFSET
        cdef int i, best = -1
        cdef double eff, u, score, best_score = 0.0
        for i in range(self.n_endpoints):
            eff = self._eff[i]
            if eff > 0.0:
                h = _mix64(kh ^ (<uint64_t>(i + 1) * GOLDEN_GAMMA))
                u = ((h >> 11) + 0.5) * INV_2_53
                score = -eff / log(u)
                if best < 0 or score > best_score:
                    best = i
                    best_score = score
        return best


cdef class Random(_Selector):
    algorithm = "random"

    cdef int _pick(self, object key) except -2:
        cdef double r = self._next_float() * self._total
        cdef int i, last = -1
        cdef double eff
        for i in range(self.n_endpoints):
            eff = self._eff[i]
            if eff > 0.0:
                last = i
                if r < eff:
                    return i
                r -= eff
        return last


cdef class P2CEwma(_Selector):
    algorithm = "p2c_ewma"

    cdef inline double _cost(self, int i) noexcept:
        cdef double ewma = self._ewma[i]
        if ewma < C_EWMA_FLOOR_S:
            ewma = C_EWMA_FLOOR_S
        return ewma * (self._active[i] + 1) / self._eff[i]

    cdef inline int _nth_healthy(self, int k) noexcept:
        cdef int i
        for i in range(self.n_endpoints):
            if self._eff[i] > 0.0:
                if k == 0:
                    return i
                k -= 1
        return -1

    cdef int _pick(self, object key) except -2:
        cdef int m = self._n_healthy
        if m == 1:
            return self._nth_healthy(0)
        cdef int ka = <int>(self._next_u64() % <uint64_t>m)
        cdef int kb = <int>(self._next_u64() % <uint64_t>(m - 1))
        if kb >= ka:
            kb += 1
        cdef int a = self._nth_healthy(ka)
        cdef int b = self._nth_healthy(kb)
        return a if self._cost(a) <= self._cost(b) else b


SELECTORS = {
    cls.algorithm: cls for cls in (RoundRobin, WeightedRoundRobin, LeastConnections, IpHash, Random, P2CEwma)
}
