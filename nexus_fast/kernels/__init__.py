"""Numba kernels with validating wrappers; naive references in ``nexus_fast.kernels.reference``.

- ``hashing``: batch FNV-1a/MurmurHash3/twemproxy hashes, ketama batch lookup, jump hash, rendezvous.
- ``eviction``: GDSF-style score with decayed frequency, k lowest-scoring entries.
- ``anomaly``: streaming EWMA z-score, rolling median/MAD, seasonal baseline.
- ``config``: the compile flags every kernel uses (``cache=True``: no request path pays JIT compilation).
- ``jitmode``: run a kernel module interpreted, in-process (tests, debugging).
- ``warmup``: ``warm_up()`` loads every kernel once at process start (Numba initialisation is ~0.8 s even cached).

Submodules are imported on use, so importing ``nexus_fast`` never loads Numba.
"""
