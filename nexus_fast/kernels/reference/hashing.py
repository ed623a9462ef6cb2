"""References for ``nexus_fast.kernels.hashing``: one key at a time, Python integers masked to width."""

from __future__ import annotations

import math
from bisect import bisect_left
from collections.abc import Sequence

from nexus_fast.balance import _ring_py

M32 = 0xFFFFFFFF
M64 = 0xFFFFFFFFFFFFFFFF
GOLDEN_GAMMA = 0x9E3779B97F4A7C15


def fnv1a_32(key: bytes) -> int:
    h = 0x811C9DC5
    for b in key:
        h = ((h ^ b) * 0x01000193) & M32
    return h


def fnv1a_64(key: bytes) -> int:
    h = 0xCBF29CE484222325
    for b in key:
        h = ((h ^ b) * 0x100000001B3) & M64
    return h


def _rotl32(x: int, r: int) -> int:
    return ((x << r) | (x >> (32 - r))) & M32


def murmur3_32(key: bytes, seed: int = 0) -> int:
    """MurmurHash3_x86_32 as in SMHasher's MurmurHash3.cpp."""
    c1, c2 = 0xCC9E2D51, 0x1B873593
    h = seed & M32
    n = len(key)
    for i in range(0, n - n % 4, 4):
        k = int.from_bytes(key[i : i + 4], "little")
        k = _rotl32((k * c1) & M32, 15)
        h ^= (k * c2) & M32
        h = (_rotl32(h, 13) * 5 + 0xE6546B64) & M32
    tail = key[n - n % 4 :]
    k = 0
    for j in reversed(range(len(tail))):
        k = (k << 8) | tail[j]
    if tail:
        k = _rotl32((k * c1) & M32, 15)
        h ^= (k * c2) & M32
    h ^= n
    h ^= h >> 16
    h = (h * 0x85EBCA6B) & M32
    h ^= h >> 13
    h = (h * 0xC2B2AE35) & M32
    return h ^ (h >> 16)


def twemproxy_hash(name: str, key: bytes, hash_tag: bytes | None = None) -> int:
    if hash_tag:
        key = _ring_py.hash_tagged(key, hash_tag)
    return _ring_py.hash_key(name, key)


def ketama_lookup(values: Sequence[int], owners: Sequence[int], h: int) -> int:
    if not values:
        return -1
    i = bisect_left(values, h)
    return owners[0 if i == len(values) else i]


def jump_hash(key: int, n_buckets: int) -> int:
    """Lamping & Veach (2014), figure 1, transcribed."""
    b, j = -1, 0
    while j < n_buckets:
        b = j
        key = (key * 2862933555777941757 + 1) & M64
        j = int((b + 1) * (float(1 << 31) / float((key >> 33) + 1)))
    return b


def mix64(z: int) -> int:
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & M64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & M64
    return z ^ (z >> 31)


def rendezvous(key_hash: int, weights: Sequence[float]) -> int:
    best, best_score = -1, 0.0
    for i, w in enumerate(weights):
        if w > 0.0:
            h = mix64(key_hash ^ (((i + 1) * GOLDEN_GAMMA) & M64))
            u = ((h >> 11) + 0.5) / 9007199254740992.0
            score = -w / math.log(u)
            if best < 0 or score > best_score:
                best, best_score = i, score
    return best
