# cython: language_level=3
"""Compiled twin of ``nexus_fast/balance/_ring_py.py``: twemproxy's key hashes, ketama lookup, Redis Cluster slots.

The pure module documents every twemproxy detail reproduced here (its 32-bit "fnv1a_64", signed-char key bytes,
libmemcached's 15-bit crc32, MurmurHash2 seeded by length, the float32 point count per server). The continuum is
built by the pure module's ``ketama_continuum`` (an MD5 per four points, off the request path) and copied into C
arrays; ``lookup`` hashes the key and binary-searches in C.
"""

from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_GET_SIZE
from cpython.mem cimport PyMem_Free, PyMem_Malloc
from libc.stdint cimport uint16_t, uint32_t, uint64_t
from libc.string cimport memcpy

import hashlib
import random
from array import array

from nexus_fast.balance._ring_py import (
    CLUSTER_SLOTS,
    DISTRIBUTIONS,
    HASH_FUNCTIONS,
    KETAMA_POINTS_PER_HASH,
    KETAMA_POINTS_PER_SERVER,
    hash_tagged,
    ketama_continuum,
    ketama_points_for,
)

__all__ = [
    "CLUSTER_SLOTS", "DISTRIBUTIONS", "HASH_FUNCTIONS", "KETAMA_POINTS_PER_HASH", "KETAMA_POINTS_PER_SERVER",
    "KetamaRing", "crc16", "crc32", "crc32a", "fnv1_32", "fnv1_64", "fnv1a_32", "fnv1a_64", "hash_key",
    "hash_tagged", "ketama_continuum", "ketama_points_for", "key_slot", "md5", "murmur", "one_at_a_time", "xxhash",
]

cdef uint32_t CRC32_TABLE[256]
cdef uint16_t CRC16_TABLE[256]


cdef void _init_tables():
    cdef uint32_t c
    cdef uint16_t d
    cdef int i, k
    for i in range(256):
        c = <uint32_t>i
        for k in range(8):
            c = (0xEDB88320 ^ (c >> 1)) if (c & 1) else (c >> 1)
        CRC32_TABLE[i] = c
        d = <uint16_t>(i << 8)
        for k in range(8):
            d = <uint16_t>(((d << 1) ^ 0x1021) if (d & 0x8000) else (d << 1))
        CRC16_TABLE[i] = d


_init_tables()

# Hash codes for the C dispatch.
cdef enum:
    H_FNV1A_64 = 0
    H_FNV1A_32 = 1
    H_FNV1_64 = 2
    H_FNV1_32 = 3
    H_MURMUR = 4
    H_MD5 = 5
    H_CRC32 = 6
    H_CRC32A = 7
    H_OAAT = 8
    H_XXHASH = 9

_CODES = {"fnv1a_64": H_FNV1A_64, "fnv1a_32": H_FNV1A_32, "fnv1_64": H_FNV1_64, "fnv1_32": H_FNV1_32,
          "murmur": H_MURMUR, "md5": H_MD5, "crc32": H_CRC32, "crc32a": H_CRC32A, "one_at_a_time": H_OAAT,
          "xxhash": H_XXHASH}


cdef inline uint32_t _fnv1a_64(const char *p, Py_ssize_t n) noexcept nogil:
    cdef uint32_t h = <uint32_t>0x84222325  # low 32 bits of the FNV-64 offset basis
    cdef Py_ssize_t i
    for i in range(n):
        h ^= <uint32_t><signed char>p[i]
        h *= <uint32_t>0x1B3  # low 32 bits of the FNV-64 prime
    return h


cdef inline uint32_t _fnv1a_32(const char *p, Py_ssize_t n) noexcept nogil:
    cdef uint32_t h = 2166136261U
    cdef Py_ssize_t i
    for i in range(n):
        h ^= <uint32_t><signed char>p[i]
        h *= 16777619U
    return h


cdef inline uint32_t _fnv1_64(const char *p, Py_ssize_t n) noexcept nogil:
    cdef uint64_t h = 0xCBF29CE484222325ULL
    cdef Py_ssize_t i
    for i in range(n):
        h *= 0x100000001B3ULL
        h ^= <uint64_t><signed char>p[i]
    return <uint32_t>h


cdef inline uint32_t _fnv1_32(const char *p, Py_ssize_t n) noexcept nogil:
    cdef uint32_t h = 2166136261U
    cdef Py_ssize_t i
    for i in range(n):
        h *= 16777619U
        h ^= <uint32_t><signed char>p[i]
    return h


cdef inline uint32_t _oaat(const char *p, Py_ssize_t n) noexcept nogil:
    cdef uint32_t h = 0
    cdef Py_ssize_t i
    for i in range(n):
        h += <uint32_t><signed char>p[i]
        h += h << 10
        h ^= h >> 6
    h += h << 3
    h ^= h >> 11
    h += h << 15
    return h


cdef inline uint32_t _murmur(const char *key, Py_ssize_t length) noexcept nogil:
    cdef uint32_t m = 0x5BD1E995
    cdef uint32_t h = (<uint32_t>0xDEADBEEF * <uint32_t>length) ^ <uint32_t>length
    cdef const unsigned char *data = <const unsigned char *>key
    cdef uint32_t k
    while length >= 4:
        k = (<uint32_t>data[0]) | (<uint32_t>data[1] << 8) | (<uint32_t>data[2] << 16) | (<uint32_t>data[3] << 24)
        k *= m
        k ^= k >> 24
        k *= m
        h *= m
        h ^= k
        data += 4
        length -= 4
    if length == 3:
        h ^= (<uint32_t>data[2]) << 16
    if length >= 2:
        h ^= (<uint32_t>data[1]) << 8
    if length >= 1:
        h ^= data[0]
        h *= m
    h ^= h >> 13
    h *= m
    h ^= h >> 15
    return h


cdef inline uint32_t _crc32a(const char *p, Py_ssize_t n) noexcept nogil:
    cdef uint32_t crc = 0xFFFFFFFFU
    cdef Py_ssize_t i
    for i in range(n):
        crc = (crc >> 8) ^ CRC32_TABLE[(crc ^ <unsigned char>p[i]) & 0xFF]
    return crc ^ 0xFFFFFFFFU


cdef inline uint32_t _rotl(uint32_t x, int r) noexcept nogil:
    return (x << r) | (x >> (32 - r))


cdef inline uint32_t _read32(const unsigned char *p) noexcept nogil:
    return (<uint32_t>p[0]) | (<uint32_t>p[1] << 8) | (<uint32_t>p[2] << 16) | (<uint32_t>p[3] << 24)


cdef uint32_t _xxh32(const char *key, Py_ssize_t n) noexcept nogil:
    # XXH32 with seed 0 (xxHash spec, "XXH32 algorithm description").
    cdef uint32_t P1 = 2654435761U, P2 = 2246822519U, P3 = 3266489917U, P4 = 668265263U, P5 = 374761393U
    cdef const unsigned char *p = <const unsigned char *>key
    cdef const unsigned char *end = p + n
    cdef uint32_t v1, v2, v3, v4, h
    if n >= 16:
        v1 = P1 + P2
        v2 = P2
        v3 = 0
        v4 = <uint32_t>0 - P1
        while p + 16 <= end:
            v1 = _rotl(v1 + _read32(p) * P2, 13) * P1
            v2 = _rotl(v2 + _read32(p + 4) * P2, 13) * P1
            v3 = _rotl(v3 + _read32(p + 8) * P2, 13) * P1
            v4 = _rotl(v4 + _read32(p + 12) * P2, 13) * P1
            p += 16
        h = _rotl(v1, 1) + _rotl(v2, 7) + _rotl(v3, 12) + _rotl(v4, 18)
    else:
        h = P5
    h += <uint32_t>n
    while p + 4 <= end:
        h = _rotl(h + _read32(p) * P3, 17) * P4
        p += 4
    while p < end:
        h = _rotl(h + (<uint32_t>p[0]) * P5, 11) * P1
        p += 1
    h ^= h >> 15
    h *= P2
    h ^= h >> 13
    h *= P3
    h ^= h >> 16
    return h


cdef uint32_t _hash(int code, bytes key, const char *p, Py_ssize_t n) except? 0xFFFFFFFF:
    if code == H_FNV1A_64:
        return _fnv1a_64(p, n)
    if code == H_FNV1A_32:
        return _fnv1a_32(p, n)
    if code == H_MURMUR:
        return _murmur(p, n)
    if code == H_XXHASH:
        return _xxh32(p, n)
    if code == H_CRC32:
        return (_crc32a(p, n) >> 16) & 0x7FFF
    if code == H_CRC32A:
        return _crc32a(p, n)
    if code == H_FNV1_64:
        return _fnv1_64(p, n)
    if code == H_FNV1_32:
        return _fnv1_32(p, n)
    if code == H_OAAT:
        return _oaat(p, n)
    cdef bytes digest = hashlib.md5(key[:n] if n != len(key) else key).digest()
    return _read32(<const unsigned char *>PyBytes_AS_STRING(digest))


cdef inline void _tag_span(const char *p, Py_ssize_t n, char open_c, char close_c,
                           Py_ssize_t *start, Py_ssize_t *length) noexcept nogil:
    cdef Py_ssize_t i, j
    start[0] = 0
    length[0] = n
    for i in range(n):
        if p[i] == open_c:
            for j in range(i + 1, n):
                if p[j] == close_c:
                    if j > i + 1:
                        start[0] = i + 1
                        length[0] = j - i - 1
                    return
            return


def _code(str hash_name):
    try:
        return _CODES[hash_name]
    except KeyError:
        raise ValueError(f"unknown hash {hash_name!r}; choose one of {', '.join(HASH_FUNCTIONS)}") from None


def hash_key(str hash_name, bytes key):
    """``hash_name`` of ``key`` as twemproxy computes it: an unsigned 32-bit int."""
    return _hash(_code(hash_name), key, PyBytes_AS_STRING(key), PyBytes_GET_SIZE(key))


def fnv1a_64(bytes key):
    return _fnv1a_64(PyBytes_AS_STRING(key), PyBytes_GET_SIZE(key))


def fnv1a_32(bytes key):
    return _fnv1a_32(PyBytes_AS_STRING(key), PyBytes_GET_SIZE(key))


def fnv1_64(bytes key):
    return _fnv1_64(PyBytes_AS_STRING(key), PyBytes_GET_SIZE(key))


def fnv1_32(bytes key):
    return _fnv1_32(PyBytes_AS_STRING(key), PyBytes_GET_SIZE(key))


def one_at_a_time(bytes key):
    return _oaat(PyBytes_AS_STRING(key), PyBytes_GET_SIZE(key))


def murmur(bytes key):
    return _murmur(PyBytes_AS_STRING(key), PyBytes_GET_SIZE(key))


def md5(bytes key):
    return _hash(H_MD5, key, PyBytes_AS_STRING(key), PyBytes_GET_SIZE(key))


def crc32(bytes key):
    return (_crc32a(PyBytes_AS_STRING(key), PyBytes_GET_SIZE(key)) >> 16) & 0x7FFF


def crc32a(bytes key):
    return _crc32a(PyBytes_AS_STRING(key), PyBytes_GET_SIZE(key))


def xxhash(bytes key):
    return _xxh32(PyBytes_AS_STRING(key), PyBytes_GET_SIZE(key))


cdef inline uint16_t _crc16(const char *p, Py_ssize_t n) noexcept nogil:
    cdef uint16_t crc = 0
    cdef Py_ssize_t i
    for i in range(n):
        crc = <uint16_t>((crc << 8) ^ CRC16_TABLE[((crc >> 8) ^ <unsigned char>p[i]) & 0xFF])
    return crc


def crc16(bytes data):
    """CRC16-CCITT (XMODEM), the checksum of Redis Cluster's key slots."""
    return _crc16(PyBytes_AS_STRING(data), PyBytes_GET_SIZE(data))


def key_slot(bytes key):
    """Redis Cluster hash slot of ``key`` (``{tag}`` honoured)."""
    cdef Py_ssize_t start, length
    cdef const char *p = PyBytes_AS_STRING(key)
    _tag_span(p, PyBytes_GET_SIZE(key), b'{', b'}', &start, &length)
    return _crc16(p + start, length) & (CLUSTER_SLOTS - 1)


cdef class KetamaRing:
    """Nodes on a consistent-hash ring, placed as twemproxy places them (see the pure twin for the contract)."""

    cdef readonly list nodes
    cdef readonly str hash_name
    cdef readonly bytes hash_tag
    cdef readonly str distribution
    cdef readonly list live
    cdef int _code
    cdef uint32_t *_values
    cdef uint32_t *_indices
    cdef Py_ssize_t _n
    cdef Py_ssize_t _nnodes
    cdef Py_ssize_t _nlive
    cdef char _tag_open
    cdef char _tag_close
    cdef bint _has_tag
    cdef int _dist  # 0 ketama, 1 modula, 2 random

    def __cinit__(self):
        self._values = NULL
        self._indices = NULL
        self._n = 0

    def __init__(self, nodes, str hash="fnv1a_64", hash_tag=None, live=None, str distribution="ketama"):
        cdef Py_ssize_t i
        self._code = _code(hash)
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
        self.hash_tag = bytes(tag)
        self._has_tag = len(tag) == 2
        if self._has_tag:
            self._tag_open = <char>tag[0]
            self._tag_close = <char>tag[1]
        self.distribution = distribution
        self._dist = DISTRIBUTIONS.index(distribution)
        self.live = list(live) if live is not None else [True] * len(self.nodes)
        if len(self.live) != len(self.nodes):
            raise ValueError("live must have one flag per node")
        self._nnodes = len(self.nodes)
        self._nlive = sum(1 for f in self.live if f)
        if self._dist == 0:
            values, indices = ketama_continuum(self.nodes, self.live)
        else:
            slots = [i for i, ((_, w), f) in enumerate(zip(self.nodes, self.live)) if f for _ in range(w)]
            values, indices = array("I", [0] * len(slots)), array("I", slots)
        self._n = len(indices)
        self._values = <uint32_t *>PyMem_Malloc(max(self._n, 1) * sizeof(uint32_t))
        self._indices = <uint32_t *>PyMem_Malloc(max(self._n, 1) * sizeof(uint32_t))
        if self._values == NULL or self._indices == NULL:
            raise MemoryError()
        for i in range(self._n):
            self._values[i] = values[i]
            self._indices[i] = indices[i]

    def __dealloc__(self):
        PyMem_Free(self._values)
        PyMem_Free(self._indices)

    def points(self):
        """The continuum: sorted point values (uint32) and the node index of each point."""
        values = array("I", [self._values[i] for i in range(self._n)])
        indices = array("I", [self._indices[i] for i in range(self._n)])
        return values, indices

    cdef inline uint32_t _key_hash(self, bytes key) except? 0xFFFFFFFF:
        cdef const char *p = PyBytes_AS_STRING(key)
        cdef Py_ssize_t n = PyBytes_GET_SIZE(key)
        cdef Py_ssize_t start = 0, length = n
        if self._has_tag:
            _tag_span(p, n, self._tag_open, self._tag_close, &start, &length)
        if start == 0 and length == n:
            return _hash(self._code, key, p, n)
        return _hash(self._code, key[start:start + length], p + start, length)

    def key_hash(self, bytes key):
        """The 32-bit hash the ring looks up for ``key`` (after the hash tag is applied)."""
        return self._key_hash(key)

    cdef inline Py_ssize_t _position(self, uint32_t h) noexcept:
        cdef Py_ssize_t left = 0, right = self._n, middle
        while left < right:
            middle = left + (right - left) // 2
            if self._values[middle] < h:
                left = middle + 1
            else:
                right = middle
        return 0 if right == self._n else right

    cpdef int lookup(self, bytes key) except -2:
        """Index (into ``nodes``) of the node that owns ``key``; -1 when no node is live."""
        cdef uint32_t h
        if self._n == 0:
            return -1
        if self._nnodes == 1 or PyBytes_GET_SIZE(key) == 0:
            h = 0
        else:
            h = self._key_hash(key)
        if self._dist == 0:
            return self._indices[self._position(h)]
        if self._dist == 1:
            return self._indices[h % self._n]
        return self._indices[random.randrange(self._n)]

    def lookup_n(self, bytes key, int count):
        """Up to ``count`` distinct live nodes for ``key``, walking the ring clockwise from its owner."""
        cdef Py_ssize_t pos, step
        cdef uint32_t h
        cdef int candidate
        if self._n == 0 or count <= 0:
            return []
        first = self.lookup(key)
        out = [first]
        if self._dist != 0:
            order = list(dict.fromkeys([self._indices[i] for i in range(self._n)]))
            start = order.index(first)
            for step in range(1, len(order)):
                if len(out) >= count:
                    break
                out.append(int(order[(start + step) % len(order)]))
            return out
        h = 0 if (self._nnodes == 1 or PyBytes_GET_SIZE(key) == 0) else self._key_hash(key)
        pos = self._position(h)
        target = min(count, self._nlive)
        for step in range(self._n):
            if len(out) >= target:
                break
            candidate = self._indices[(pos + step) % self._n]
            if candidate not in out:
                out.append(candidate)
        return out
