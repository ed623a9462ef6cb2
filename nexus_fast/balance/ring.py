"""The consistent-hash ring of the Redis data plane, public for any service that shards by key.

``KetamaRing(nodes=[(name, weight), ...], hash="fnv1a_64", hash_tag="{}", live=None, distribution="ketama")``
places keys exactly as twemproxy (nutcracker) does for the same server list, hash and hash tag, so data written
through twemproxy is found where nexus-fast looks for it:

    ring = KetamaRing([("10.0.0.1:6379", 1), ("10.0.0.2:6379", 1)], hash="fnv1a_64")
    owner = ring.lookup(b"user:42")            # index into nodes; -1 when no node is live
    owners = ring.lookup_n(b"user:42", 2)      # the owner and its next distinct successor (replication)
    values, indices = ring.points()            # the continuum: sorted uint32 point values and node indices
    ring.key_hash(b"user:42")                  # the 32-bit hash that is looked up

Stable API (the kernels' NumPy batch lookup builds on ``points()`` and ``key_hash``): the continuum is sorted by
value; a key maps to the first point whose value is >= its hash, wrapping to the first point. Hash functions
(``HASH_FUNCTIONS``): fnv1a_64 (twemproxy's, which is 32-bit), fnv1a_32, fnv1_64, fnv1_32, murmur, md5, crc32
(libmemcached's 15-bit), crc32a, one_at_a_time, xxhash (XXH32, ours). ``hash_key(name, key)`` computes one;
``key_slot(key)``/``crc16`` give Redis Cluster slots. Marking a node not ``live`` rebuilds the ring over the others
as twemproxy does on auto-eject.

The implementation is ``native/ring.pyx`` when compiled, else the pure twin ``nexus_fast.balance._ring_py``.
"""

from __future__ import annotations

from nexus_fast import _extensions

_impl = _extensions.load("ring")

KetamaRing = _impl.KetamaRing
HASH_FUNCTIONS: tuple[str, ...] = _impl.HASH_FUNCTIONS
DISTRIBUTIONS: tuple[str, ...] = _impl.DISTRIBUTIONS
CLUSTER_SLOTS: int = _impl.CLUSTER_SLOTS
hash_key = _impl.hash_key
hash_tagged = _impl.hash_tagged
key_slot = _impl.key_slot
crc16 = _impl.crc16
ketama_continuum = _impl.ketama_continuum

__all__ = [
    "CLUSTER_SLOTS", "DISTRIBUTIONS", "HASH_FUNCTIONS", "KetamaRing", "crc16", "hash_key", "hash_tagged",
    "ketama_continuum", "key_slot",
]
