"""Run a kernel module's Numba functions as plain Python, in-process (what ``NUMBA_DISABLE_JIT=1`` does globally).

``with interpreted(hashing): hashing.fnv1a_64(keys)`` swaps every ``@njit`` dispatcher in the module's namespace for
its ``.py_func`` for the duration, so a kernel's helpers run interpreted too, and silences NumPy's scalar overflow
warnings: the kernels rely on unsigned wrap-around, which compiled code does silently. The tests use it to run every
kernel over both paths in one session without recompiling.
"""

from __future__ import annotations

import contextlib
import types
from collections.abc import Iterator

import numpy as np
from numba.core.registry import CPUDispatcher


@contextlib.contextmanager
def interpreted(*modules: types.ModuleType) -> Iterator[None]:
    saved: list[tuple[types.ModuleType, str, object]] = []
    try:
        for module in modules:
            for name, obj in list(vars(module).items()):
                if isinstance(obj, CPUDispatcher):
                    saved.append((module, name, obj))
                    setattr(module, name, obj.py_func)
        with np.errstate(over="ignore"):
            yield
    finally:
        for module, name, obj in saved:
            setattr(module, name, obj)
