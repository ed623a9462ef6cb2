"""Naive pure-Python references for the Numba kernels: slow, short and obviously correct (stumpy's ``tests/naive.py``).

The property tests compare every kernel with its reference, and ``python -m bench kernels`` reports each kernel's
speed-up over it. Nothing on a request path imports these.
"""
