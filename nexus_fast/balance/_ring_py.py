"""Pure-Python twin of ``native/ring.pyx``: twemproxy's key hashes, its ketama continuum, and Redis Cluster slots.

Placement must be bit-for-bit what twemproxy (nutcracker 0.5, ``src/hashkit/``) computes for the same
``nutcracker.yml``, so a twemproxy user switches to nexus-fast without moving a key. The details that matter:

* ``fnv1a_64`` in twemproxy is really a 32-bit FNV-1a seeded with the low 32 bits of the 64-bit offset basis and
  multiplied by the low 32 bits of the 64-bit prime (``hash_fnv1a_64`` in ``nc_fnv.c``).
* Key bytes are read through ``const char *``: on x86 ``char`` is signed, so a byte >= 0x80 is sign-extended
  before the XOR (``(uint32_t)key[x]``). The FNV functions here reproduce that.
* ``crc32`` is libmemcached's variant: ``((~crc) >> 16) & 0x7fff`` (15 bits); ``crc32a`` is the plain CRC-32.
* ``murmur`` is MurmurHash2 seeded with ``0xdeadbeef * len``.
* ``md5`` is the little-endian first word of the MD5 digest.
* The ketama continuum (``nc_ketama.c``): each live server gets ``floor(pct * 160 / 4 * nlive) * 4`` points
  (float32 arithmetic, as C computes it), four per MD5 of ``"<name>-<i>"``; lookup takes the first point whose
  value is >= the key hash, wrapping to the first point.
* A server's name is its ``name`` in the servers line, else ``"host:port"`` (``"host"`` when the port is 11211,
  libmemcached's compatibility rule in ``conf_add_server``).

``xxhash`` (XXH32, seed 0, our addition) is not in twemproxy. Lookup returns -1 when no node is live.
"""

from __future__ import annotations

import hashlib
import random
import struct
import zlib
from array import array
from bisect import bisect_left
from collections.abc import Sequence

import xxhash as _xxhash

KETAMA_POINTS_PER_SERVER = 160
KETAMA_POINTS_PER_HASH = 4
CLUSTER_SLOTS = 16384

HASH_FUNCTIONS = ("fnv1a_64", "fnv1a_32", "fnv1_64", "fnv1_32", "murmur", "md5", "crc32", "crc32a",
                  "one_at_a_time", "xxhash")
DISTRIBUTIONS = ("ketama", "modula", "random")

_M32 = 0xFFFFFFFF


def _signed_chars(key: bytes) -> list[int]:
    # (uint32_t)(char)b on a signed-char platform.
    return [(b | 0xFFFFFF00) if b & 0x80 else b for b in key]


def fnv1a_64(key: bytes) -> int:
    h = 0xCBF29CE484222325 & _M32
    for v in _signed_chars(key):
        h = ((h ^ v) * 0x1B3) & _M32
    return h


def fnv1a_32(key: bytes) -> int:
    h = 2166136261
    for v in _signed_chars(key):
        h = ((h ^ v) * 16777619) & _M32
    return h


def fnv1_64(key: bytes) -> int:
    h = 0xCBF29CE484222325
    for b in key:
        v = (b | 0xFFFFFFFFFFFFFF00) if b & 0x80 else b
        h = ((h * 0x100000001B3) & 0xFFFFFFFFFFFFFFFF) ^ v
    return h & _M32


def fnv1_32(key: bytes) -> int:
    h = 2166136261
    for v in _signed_chars(key):
        h = ((h * 16777619) & _M32) ^ v
    return h


def one_at_a_time(key: bytes) -> int:
    h = 0
    for v in _signed_chars(key):
        h = (h + v) & _M32
        h = (h + (h << 10)) & _M32
        h ^= h >> 6
    h = (h + (h << 3)) & _M32
    h ^= h >> 11
    h = (h + (h << 15)) & _M32
    return h


def murmur(key: bytes) -> int:
    m = 0x5BD1E995
    length = len(key)
    h = ((0xDEADBEEF * length) & _M32) ^ length
    i = 0
    while length - i >= 4:
        k = int.from_bytes(key[i:i + 4], "little")
        k = (k * m) & _M32
        k ^= k >> 24
        k = (k * m) & _M32
        h = ((h * m) & _M32) ^ k
        i += 4
    rest = length - i
    if rest == 3:
        h ^= key[i + 2] << 16
    if rest >= 2:
        h ^= key[i + 1] << 8
    if rest >= 1:
        h ^= key[i]
        h = (h * m) & _M32
    h ^= h >> 13
    h = (h * m) & _M32
    h ^= h >> 15
    return h


def md5(key: bytes) -> int:
    return int.from_bytes(hashlib.md5(key).digest()[:4], "little")


def crc32(key: bytes) -> int:
    return ((zlib.crc32(key) & _M32) >> 16) & 0x7FFF


def crc32a(key: bytes) -> int:
    return zlib.crc32(key) & _M32


def xxhash(key: bytes) -> int:
    return int(_xxhash.xxh32_intdigest(key))


_BY_NAME = {
    "fnv1a_64": fnv1a_64, "fnv1a_32": fnv1a_32, "fnv1_64": fnv1_64, "fnv1_32": fnv1_32, "murmur": murmur,
    "md5": md5, "crc32": crc32, "crc32a": crc32a, "one_at_a_time": one_at_a_time, "xxhash": xxhash,
}


def hash_key(hash_name: str, key: bytes) -> int:
    """``hash_name`` (one of ``HASH_FUNCTIONS``) of ``key`` as twemproxy computes it: an unsigned 32-bit int."""
    try:
        return _BY_NAME[hash_name](key)
    except KeyError:
        raise ValueError(f"unknown hash {hash_name!r}; choose one of {', '.join(HASH_FUNCTIONS)}") from None


def hash_tagged(key: bytes, hash_tag: bytes) -> bytes:
    """The part of ``key`` that is hashed: between the first ``hash_tag[0]`` and the next ``hash_tag[1]`` when
    that part is non-empty (twemproxy's ``server_pool_hash`` and Redis Cluster's ``keyHashSlot`` agree)."""
    if len(hash_tag) != 2:
        return key
    start = key.find(hash_tag[:1])
    if start >= 0:
        end = key.find(hash_tag[1:], start + 1)
        if end > start + 1:
            return key[start + 1:end]
    return key


def crc16(data: bytes) -> int:
    """CRC16-CCITT (XMODEM), the checksum of Redis Cluster's key slots (cluster spec, "Keys distribution")."""
    crc = 0
    for b in data:
        crc ^= b << 8
        for _ in range(8):
            crc = ((crc << 1) ^ 0x1021) if crc & 0x8000 else (crc << 1)
            crc &= 0xFFFF
    return crc


def key_slot(key: bytes) -> int:
    """Redis Cluster hash slot of ``key`` (``{tag}`` honoured)."""
    return crc16(hash_tagged(key, b"{}")) & (CLUSTER_SLOTS - 1)


def _f32(value: float) -> float:
    return float(struct.unpack("f", struct.pack("f", value))[0])


def ketama_points_for(weight: int, total_weight: int, nlive: int) -> int:
    """Points twemproxy gives one live server: float32 arithmetic as in ``ketama_update``."""
    pct = _f32(weight / total_weight)
    scaled = _f32(_f32(_f32(pct * KETAMA_POINTS_PER_SERVER) / 4) * _f32(float(nlive)))
    floored = int(_f32(scaled + 0.0000000001) // 1)
    return floored * KETAMA_POINTS_PER_HASH


def ketama_continuum(
    nodes: Sequence[tuple[str, int]], live: Sequence[bool] | None = None
) -> tuple[array, array]:
    """The sorted (values, node indices) of twemproxy's continuum over the live nodes."""
    flags = list(live) if live is not None else [True] * len(nodes)
    nlive = sum(1 for f in flags if f)
    total_weight = sum(w for (_, w), f in zip(nodes, flags, strict=True) if f)
    points: list[tuple[int, int]] = []
    for index, ((name, weight), alive) in enumerate(zip(nodes, flags, strict=True)):
        if not alive:
            continue
        per_server = ketama_points_for(weight, total_weight, nlive)
        for i in range(per_server // KETAMA_POINTS_PER_HASH):
            digest = hashlib.md5(f"{name}-{i}".encode()).digest()
            for x in range(KETAMA_POINTS_PER_HASH):
                points.append((int.from_bytes(digest[4 * x:4 * x + 4], "little"), index))
    # glibc's qsort is a merge sort for arrays this size: stable, so equal values keep insertion order.
    points.sort(key=lambda p: p[0])
    return array("I", [p[0] for p in points]), array("I", [p[1] for p in points])


class KetamaRing:
    """Nodes on a consistent-hash ring, placed as twemproxy places them.

    ``nodes`` is ``[(name, weight), ...]``; ``live`` (optional, same length) marks ejected nodes False, which
    rebuilds the ring over the live ones exactly as twemproxy does on auto-eject. ``distribution`` is "ketama"
    (default), "modula" (``hash % total_weight`` over weight-repeated nodes) or "random".
    """

    def __init__(
        self,
        nodes: Sequence[tuple[str, int]],
        hash: str = "fnv1a_64",
        hash_tag: str | bytes | None = None,
        live: Sequence[bool] | None = None,
        distribution: str = "ketama",
    ) -> None:
        if hash not in _BY_NAME:
            raise ValueError(f"unknown hash {hash!r}; choose one of {', '.join(HASH_FUNCTIONS)}")
        if distribution not in DISTRIBUTIONS:
            raise ValueError(f"unknown distribution {distribution!r}; choose one of {', '.join(DISTRIBUTIONS)}")
        for name, weight in nodes:
            if int(weight) < 1:
                raise ValueError(f"node {name!r}: weight must be >= 1")
        self.nodes = [(str(n), int(w)) for n, w in nodes]
        self.hash_name = hash
        tag = hash_tag.encode() if isinstance(hash_tag, str) else (hash_tag or b"")
        if tag and len(tag) != 2:
            raise ValueError("hash_tag must be exactly two characters, such as \"{}\"")
        self.hash_tag = tag
        self.distribution = distribution
        self.live = list(live) if live is not None else [True] * len(self.nodes)
        if len(self.live) != len(self.nodes):
            raise ValueError("live must have one flag per node")
        self._hash = _BY_NAME[hash]
        self._nlive = sum(1 for f in self.live if f)
        if distribution == "ketama":
            self._values, self._indices = ketama_continuum(self.nodes, self.live)
        else:
            slots = [i for i, ((_, w), f) in enumerate(zip(self.nodes, self.live, strict=True)) if f for _ in range(w)]
            self._values, self._indices = array("I", [0] * len(slots)), array("I", slots)
        self._values_list = list(self._values)

    def points(self) -> tuple[array, array]:
        """The continuum: sorted point values (uint32) and the node index of each point."""
        return array("I", self._values), array("I", self._indices)

    def key_hash(self, key: bytes) -> int:
        """The 32-bit hash the ring looks up for ``key`` (after the hash tag is applied)."""
        if self.hash_tag:
            key = hash_tagged(key, self.hash_tag)
        return self._hash(key)

    def lookup(self, key: bytes) -> int:
        """Index (into ``nodes``) of the node that owns ``key``; -1 when no node is live."""
        n = len(self._indices)
        if n == 0:
            return -1
        # twemproxy's server_pool_hash: one server or an empty key short-circuits to hash 0.
        if len(self.nodes) == 1 or not key:
            h = 0
        else:
            h = self.key_hash(key)
        if self.distribution == "ketama":
            i = bisect_left(self._values_list, h)
            return int(self._indices[0 if i == n else i])
        if self.distribution == "modula":
            return int(self._indices[h % n])
        return int(self._indices[random.randrange(n)])

    def lookup_n(self, key: bytes, count: int) -> list[int]:
        """Up to ``count`` distinct live nodes for ``key``, walking the ring clockwise from its owner."""
        n = len(self._indices)
        if n == 0 or count <= 0:
            return []
        first = self.lookup(key)
        out = [first]
        if self.distribution != "ketama":
            step_from = list(dict.fromkeys(self._indices))
            pos = step_from.index(first)
            for j in range(1, len(step_from)):
                if len(out) >= count:
                    break
                out.append(int(step_from[(pos + j) % len(step_from)]))
            return out
        h = 0 if (len(self.nodes) == 1 or not key) else self.key_hash(key)
        i = bisect_left(self._values_list, h)
        for step in range(n):
            if len(out) >= min(count, self._nlive):
                break
            candidate = int(self._indices[(i + step) % n])
            if candidate not in out:
                out.append(candidate)
        return out
