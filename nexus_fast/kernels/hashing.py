"""Batch hashing and consistent-hash placement over arrays of keys (Numba kernels).

Keys are byte strings; a batch is packed once into one ``uint8`` buffer plus ``int64`` offsets (``pack_keys``) so a
kernel walks them without touching Python objects. Public functions validate and pack; the private ``_..._kernel``
functions are the compiled code (``.py_func`` runs them as Python, which is what ``NUMBA_DISABLE_JIT=1`` does).
The naive references the tests compare against live in ``nexus_fast.kernels.reference.hashing``.

- ``fnv1a_32``, ``fnv1a_64``, ``murmur3_32``: the standard functions (FNV: Fowler/Noll/Vo, IETF draft
  ``draft-eastlake-fnv``; MurmurHash3 x86_32: Appleby's SMHasher), one hash per key.
- ``twemproxy_hash``: twemproxy's ``fnv1a_64``, ``fnv1a_32`` and ``murmur`` exactly as ``src/hashkit`` computes them
  (32-bit results, signed ``char`` bytes), the placement hashes of ``nexus_fast.balance.ring``.
- ``ketama_lookup``: owner of each key hash on a sorted ketama continuum (first point >= hash, wrapping), and
  ``ring_lookup_batch`` which does hash tags, hashing and lookup for a ``KetamaRing`` in one pass.
- ``jump_hash``: Lamping & Veach, "A Fast, Minimal Memory, Consistent Hash Algorithm" (2014).
- ``rendezvous``: weighted highest-random-weight hashing, the same scores as the ``ip_hash`` selector.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from numba import njit

from nexus_fast.kernels.config import NJIT_OPTIONS
from nexus_fast.kernels.jitmode import run_kernel

U64 = np.uint64
M32 = U64(0xFFFFFFFF)
FNV32_OFFSET = U64(0x811C9DC5)
FNV32_PRIME = U64(0x01000193)
FNV64_OFFSET = U64(0xCBF29CE484222325)
FNV64_PRIME = U64(0x100000001B3)
GOLDEN_GAMMA = U64(0x9E3779B97F4A7C15)
MIX1 = U64(0xBF58476D1CE4E5B9)
MIX2 = U64(0x94D049BB133111EB)
JUMP_MULT = U64(2862933555777941757)
MURMUR3_C1 = U64(0xCC9E2D51)
MURMUR3_C2 = U64(0x1B873593)
MURMUR2_M = U64(0x5BD1E995)
S11 = U64(11)
S13 = U64(13)
S15 = U64(15)
S16 = U64(16)
S24 = U64(24)
S27 = U64(27)
S30 = U64(30)
S31 = U64(31)
S33 = U64(33)
INV_2_53 = 1.0 / 9007199254740992.0

TWEMPROXY_HASHES = ("fnv1a_64", "fnv1a_32", "murmur")
_TWEMPROXY_CODES = {"fnv1a_64": 0, "fnv1a_32": 1, "murmur": 2}

KeyBatch = Sequence[bytes] | tuple[np.ndarray, np.ndarray]


def pack_keys(keys: Sequence[bytes]) -> tuple[np.ndarray, np.ndarray]:
    """``(buffer, offsets)``: key ``i`` is ``buffer[offsets[i]:offsets[i + 1]]``."""
    lengths = np.fromiter(map(len, keys), dtype=np.int64, count=len(keys))
    offsets = np.zeros(len(keys) + 1, dtype=np.int64)
    np.cumsum(lengths, out=offsets[1:])
    buf = np.frombuffer(b"".join(keys), dtype=np.uint8)
    return buf, offsets


def _packed(keys: KeyBatch) -> tuple[np.ndarray, np.ndarray]:
    if isinstance(keys, tuple) and len(keys) == 2 and isinstance(keys[0], np.ndarray):
        buf, offsets = keys
        buf = np.ascontiguousarray(buf, dtype=np.uint8)
        offsets = np.ascontiguousarray(offsets, dtype=np.int64)
        if offsets.ndim != 1 or offsets.size < 1 or offsets[0] != 0 or offsets[-1] != buf.size:
            raise ValueError("offsets must start at 0 and end at len(buffer)")
        if np.any(np.diff(offsets) < 0):
            raise ValueError("offsets must be non-decreasing")
        return buf, offsets
    return pack_keys(keys)  # type: ignore[arg-type]


# ---------------------------------------------------------------------------------------------------- kernels --


@njit(**NJIT_OPTIONS)
def _fnv1a_32_kernel(buf: Any, offsets: Any) -> Any:
    n = offsets.size - 1
    out = np.empty(n, dtype=np.uint32)
    for k in range(n):
        h = FNV32_OFFSET
        for i in range(offsets[k], offsets[k + 1]):
            h = ((h ^ U64(buf[i])) * FNV32_PRIME) & M32
        out[k] = h
    return out


@njit(**NJIT_OPTIONS)
def _fnv1a_64_kernel(buf: Any, offsets: Any) -> Any:
    n = offsets.size - 1
    out = np.empty(n, dtype=np.uint64)
    for k in range(n):
        h = FNV64_OFFSET
        for i in range(offsets[k], offsets[k + 1]):
            h = (h ^ U64(buf[i])) * FNV64_PRIME
        out[k] = h
    return out


@njit(**NJIT_OPTIONS)
def _rotl32(x: Any, r: Any) -> Any:
    return ((x << r) | (x >> (U64(32) - r))) & M32


@njit(**NJIT_OPTIONS)
def _murmur3_32_one(buf: Any, start: int, end: int, seed: Any) -> Any:
    h = seed & M32
    length = end - start
    nblocks = length // 4
    for b in range(nblocks):
        i = start + 4 * b
        k = U64(buf[i]) | (U64(buf[i + 1]) << U64(8)) | (U64(buf[i + 2]) << S16) | (U64(buf[i + 3]) << S24)
        k = (k * MURMUR3_C1) & M32
        k = _rotl32(k, U64(15))
        k = (k * MURMUR3_C2) & M32
        h ^= k
        h = _rotl32(h, U64(13))
        h = (h * U64(5) + U64(0xE6546B64)) & M32
    tail = start + 4 * nblocks
    rest = length & 3
    k1 = U64(0)
    if rest == 3:
        k1 ^= U64(buf[tail + 2]) << S16
    if rest >= 2:
        k1 ^= U64(buf[tail + 1]) << U64(8)
    if rest >= 1:
        k1 ^= U64(buf[tail])
        k1 = (k1 * MURMUR3_C1) & M32
        k1 = _rotl32(k1, U64(15))
        k1 = (k1 * MURMUR3_C2) & M32
        h ^= k1
    h ^= U64(length) & M32
    h ^= h >> S16
    h = (h * U64(0x85EBCA6B)) & M32
    h ^= h >> S13
    h = (h * U64(0xC2B2AE35)) & M32
    h ^= h >> S16
    return h


@njit(**NJIT_OPTIONS)
def _murmur3_32_kernel(buf: Any, offsets: Any, seed: Any) -> Any:
    n = offsets.size - 1
    out = np.empty(n, dtype=np.uint32)
    for k in range(n):
        out[k] = _murmur3_32_one(buf, offsets[k], offsets[k + 1], seed)
    return out


@njit(**NJIT_OPTIONS)
def _signed_char(b: Any) -> Any:
    # (uint32_t)key[x] with a signed char: bytes >= 0x80 are sign-extended (twemproxy on x86).
    v = U64(b)
    if v & U64(0x80):
        v |= U64(0xFFFFFF00)
    return v


@njit(**NJIT_OPTIONS)
def _twemproxy_one(code: int, buf: Any, start: int, end: int) -> Any:
    if code == 0 or code == 1:  # fnv1a_64 (32-bit state, truncated 64-bit constants) or fnv1a_32
        if code == 0:
            h = FNV64_OFFSET & M32
            prime = FNV64_PRIME & M32
        else:
            h = FNV32_OFFSET
            prime = FNV32_PRIME
        for i in range(start, end):
            h = ((h ^ _signed_char(buf[i])) * prime) & M32
        return h
    # murmur: MurmurHash2 seeded with 0xdeadbeef * length (twemproxy's nc_murmur.c)
    length = end - start
    h = ((U64(0xDEADBEEF) * U64(length)) & M32) ^ U64(length)
    i = start
    while end - i >= 4:
        k = U64(buf[i]) | (U64(buf[i + 1]) << U64(8)) | (U64(buf[i + 2]) << S16) | (U64(buf[i + 3]) << S24)
        k = (k * MURMUR2_M) & M32
        k ^= k >> S24
        k = (k * MURMUR2_M) & M32
        h = ((h * MURMUR2_M) & M32) ^ k
        i += 4
    rest = end - i
    if rest == 3:
        h ^= U64(buf[i + 2]) << S16
    if rest >= 2:
        h ^= U64(buf[i + 1]) << U64(8)
    if rest >= 1:
        h ^= U64(buf[i])
        h = (h * MURMUR2_M) & M32
    h ^= h >> S13
    h = (h * MURMUR2_M) & M32
    h ^= h >> S15
    return h


@njit(**NJIT_OPTIONS)
def _tag_span(buf: Any, start: int, end: int, open_tag: int, close_tag: int) -> Any:
    # Between the first open_tag and the next close_tag when non-empty, else the whole key (hash_tagged()).
    for i in range(start, end):
        if buf[i] == open_tag:
            for j in range(i + 1, end):
                if buf[j] == close_tag:
                    if j > i + 1:
                        return i + 1, j
                    return start, end
            return start, end
    return start, end


@njit(**NJIT_OPTIONS)
def _twemproxy_hash_kernel(code: int, buf: Any, offsets: Any, open_tag: int, close_tag: int) -> Any:
    n = offsets.size - 1
    out = np.empty(n, dtype=np.uint32)
    for k in range(n):
        start = offsets[k]
        end = offsets[k + 1]
        if open_tag >= 0:
            start, end = _tag_span(buf, start, end, open_tag, close_tag)
        out[k] = _twemproxy_one(code, buf, start, end)
    return out


@njit(**NJIT_OPTIONS)
def _ketama_lookup_kernel(values: Any, owners: Any, hashes: Any) -> Any:
    n = values.size
    out = np.empty(hashes.size, dtype=np.int64)
    for k in range(hashes.size):
        h = hashes[k]
        lo = 0
        hi = n
        while lo < hi:  # first point >= h (bisect_left)
            mid = (lo + hi) >> 1
            if values[mid] < h:
                lo = mid + 1
            else:
                hi = mid
        out[k] = owners[0 if lo == n else lo]
    return out


@njit(**NJIT_OPTIONS)
def _ring_lookup_kernel(
    code: int, buf: Any, offsets: Any, open_tag: int, close_tag: int, values: Any, owners: Any, zero_hash: bool
) -> Any:
    n = offsets.size - 1
    hashes = np.zeros(n, dtype=np.uint32)
    if not zero_hash:
        for k in range(n):
            start = offsets[k]
            end = offsets[k + 1]
            if end > start:  # an empty key hashes to 0, as twemproxy's server_pool_hash does
                if open_tag >= 0:
                    start, end = _tag_span(buf, start, end, open_tag, close_tag)
                hashes[k] = _twemproxy_one(code, buf, start, end)
    return _ketama_lookup_kernel(values, owners, hashes)


@njit(**NJIT_OPTIONS)
def _jump_one(key: Any, n_buckets: int) -> int:
    b = -1
    j = 0
    while j < n_buckets:
        b = j
        key = key * JUMP_MULT + U64(1)
        j = int((b + 1) * (2147483648.0 / float((key >> S33) + U64(1))))
    return b


@njit(**NJIT_OPTIONS)
def _jump_hash_kernel(keys: Any, n_buckets: int) -> Any:
    out = np.empty(keys.size, dtype=np.int64)
    for k in range(keys.size):
        out[k] = _jump_one(U64(keys[k]), n_buckets)
    return out


@njit(**NJIT_OPTIONS)
def _mix64(z: Any) -> Any:
    z = (z ^ (z >> S30)) * MIX1
    z = (z ^ (z >> S27)) * MIX2
    return z ^ (z >> S31)


@njit(**NJIT_OPTIONS)
def _rendezvous_kernel(key_hashes: Any, weights: Any) -> Any:
    out = np.empty(key_hashes.size, dtype=np.int64)
    for k in range(key_hashes.size):
        kh = U64(key_hashes[k])
        best = -1
        best_score = 0.0
        for i in range(weights.size):
            w = weights[i]
            if w > 0.0:
                h = _mix64(kh ^ (U64(i + 1) * GOLDEN_GAMMA))
                u = (float(h >> S11) + 0.5) * INV_2_53
                score = -w / np.log(u)
                if best < 0 or score > best_score:
                    best = i
                    best_score = score
        out[k] = best
    return out


# --------------------------------------------------------------------------------------------------- wrappers --


def fnv1a_32(keys: KeyBatch) -> np.ndarray:
    """FNV-1a 32-bit of every key (``uint32`` array)."""
    return run_kernel(_fnv1a_32_kernel, *_packed(keys))


def fnv1a_64(keys: KeyBatch) -> np.ndarray:
    """FNV-1a 64-bit of every key (``uint64`` array)."""
    return run_kernel(_fnv1a_64_kernel, *_packed(keys))


def murmur3_32(keys: KeyBatch, seed: int = 0) -> np.ndarray:
    """MurmurHash3 x86_32 of every key with ``seed`` (``uint32`` array)."""
    if not 0 <= seed <= 0xFFFFFFFF:
        raise ValueError("seed must fit in 32 bits")
    buf, offsets = _packed(keys)
    return run_kernel(_murmur3_32_kernel, buf, offsets, U64(seed))


def _tag_bytes(hash_tag: bytes | str | None) -> tuple[int, int]:
    if not hash_tag:
        return -1, -1
    tag = hash_tag.encode() if isinstance(hash_tag, str) else hash_tag
    if len(tag) != 2:
        raise ValueError("hash_tag must be exactly two characters, such as '{}'")
    return tag[0], tag[1]


def twemproxy_hash(name: str, keys: KeyBatch, hash_tag: bytes | str | None = None) -> np.ndarray:
    """twemproxy's ``name`` hash (``fnv1a_64``, ``fnv1a_32`` or ``murmur``) of every key, hash tag applied."""
    try:
        code = _TWEMPROXY_CODES[name]
    except KeyError:
        raise ValueError(f"unsupported hash {name!r}; batch hashing supports {', '.join(TWEMPROXY_HASHES)}") from None
    open_tag, close_tag = _tag_bytes(hash_tag)
    buf, offsets = _packed(keys)
    return run_kernel(_twemproxy_hash_kernel, code, buf, offsets, open_tag, close_tag)


def ketama_lookup(values: np.ndarray, owners: np.ndarray, hashes: np.ndarray) -> np.ndarray:
    """Owner of each 32-bit hash on the continuum ``values`` (sorted ``uint32``) with ``owners[i]`` per point.

    The owner is that of the first point >= the hash, wrapping to the first point (twemproxy's
    ``ketama_dispatch``); -1 for every key when the continuum is empty.
    """
    values = np.ascontiguousarray(values, dtype=np.uint32)
    owners = np.ascontiguousarray(owners, dtype=np.int64)
    hashes = np.ascontiguousarray(hashes, dtype=np.uint32)
    if values.shape != owners.shape or values.ndim != 1:
        raise ValueError("values and owners must be 1-D arrays of equal length")
    if values.size == 0:
        return np.full(hashes.size, -1, dtype=np.int64)
    if values.size > 1 and np.any(values[1:] < values[:-1]):
        raise ValueError("values must be sorted")
    return run_kernel(_ketama_lookup_kernel, values, owners, hashes)


def ring_lookup_batch(ring: Any, keys: KeyBatch) -> np.ndarray:
    """``[ring.lookup(k) for k in keys]`` for a ketama ``nexus_fast.balance.ring.KetamaRing``, in one kernel call.

    Supports the ring's ``fnv1a_64``, ``fnv1a_32`` and ``murmur`` hashes and its hash tag; other hashes and
    distributions fall back to the ring's own ``lookup`` per key.
    """
    buf, offsets = _packed(keys)
    if getattr(ring, "distribution", "ketama") != "ketama" or ring.hash_name not in _TWEMPROXY_CODES:
        keys_list = [bytes(buf[offsets[i] : offsets[i + 1]]) for i in range(offsets.size - 1)]
        return np.array([ring.lookup(k) for k in keys_list], dtype=np.int64)
    values, owners = ring.points()
    values = np.asarray(values, dtype=np.uint32)
    if values.size == 0:
        return np.full(offsets.size - 1, -1, dtype=np.int64)
    owners = np.asarray(owners, dtype=np.int64)
    open_tag, close_tag = _tag_bytes(ring.hash_tag)
    zero_hash = len(ring.nodes) == 1  # one server short-circuits to hash 0 (server_pool_hash)
    code = _TWEMPROXY_CODES[ring.hash_name]
    return run_kernel(_ring_lookup_kernel, code, buf, offsets, open_tag, close_tag, values, owners, zero_hash)


def jump_hash(keys: np.ndarray | Sequence[int], n_buckets: int) -> np.ndarray:
    """Jump consistent hash bucket in ``[0, n_buckets)`` of every 64-bit integer key."""
    if n_buckets < 1:
        raise ValueError("n_buckets must be >= 1")
    arr = np.ascontiguousarray(keys, dtype=np.uint64)
    return run_kernel(_jump_hash_kernel, arr, int(n_buckets))


def rendezvous(key_hashes: np.ndarray | Sequence[int], weights: Sequence[float] | np.ndarray) -> np.ndarray:
    """Weighted rendezvous (HRW) owner of every 64-bit key hash; a weight of 0 marks an endpoint absent.

    Scores are ``-w / ln(u)`` with ``u`` from splitmix64 of (key hash, endpoint), so the result matches the
    ``ip_hash`` selector given ``fnv1a_64`` key hashes. -1 when every weight is 0.
    """
    w = np.ascontiguousarray(weights, dtype=np.float64)
    if w.ndim != 1 or not np.all(np.isfinite(w)) or np.any(w < 0):
        raise ValueError("weights must be a 1-D array of finite values >= 0")
    arr = np.ascontiguousarray(key_hashes, dtype=np.uint64)
    return run_kernel(_rendezvous_kernel, arr, w)
