"""Load every kernel's machine code at process start, so the first batch on a live path is not the slow one.

Even with ``cache=True`` (compiled code read from ``__pycache__``), the first kernel call in a process pays Numba's
and LLVM's one-time initialisation (about 0.8 s on the development machine) and each kernel's cache load (a few ms).
A worker calls ``warm_up()`` once while it starts, before it accepts traffic; a cold cache compiles here too.
"""

from __future__ import annotations

import time

import numpy as np


def warm_up() -> dict[str, float]:
    """Call every public kernel once on tiny inputs; seconds spent per module."""
    from nexus_fast.kernels import anomaly, eviction, hashing

    spent: dict[str, float] = {}
    t0 = time.perf_counter()
    keys = [b"a", b"bc"]
    hashing.fnv1a_32(keys)
    hashing.fnv1a_64(keys)
    hashing.murmur3_32(keys)
    for name in hashing.TWEMPROXY_HASHES:
        hashing.twemproxy_hash(name, keys, "{}")
    points = np.array([1, 2], dtype=np.uint32)
    hashing.ketama_lookup(points, np.array([0, 1]), np.array([1], dtype=np.uint32))
    hashing.jump_hash(np.array([1], dtype=np.uint64), 2)
    hashing.rendezvous(np.array([1], dtype=np.uint64), [1.0])
    t1 = time.perf_counter()
    spent["hashing"] = t1 - t0
    ones = np.ones(2)
    eviction.gdsf_scores(ones, ones, ones, ones, 1.0, 1.0)
    eviction.lowest_k(ones, 1)
    eviction.eviction_candidates(ones, ones, ones, ones, 1.0, 1.0, 1)
    t2 = time.perf_counter()
    spent["eviction"] = t2 - t1
    anomaly.ewma_scores(ones, anomaly.new_ewma_state())
    anomaly.mad_scores(ones, anomaly.new_mad_state(2))
    anomaly.seasonal_scores(ones, ones, anomaly.new_seasonal_state(2))
    spent["anomaly"] = time.perf_counter() - t2
    return spent
