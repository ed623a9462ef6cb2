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
from typing import Any

import numba
import numpy as np
from numba.core.registry import CPUDispatcher


def run_kernel(kernel: Any, *args: Any) -> Any:
    """Call a kernel. Interpreted (``NUMBA_DISABLE_JIT=1``) it runs on NumPy scalars, which warn where compiled code
    (``error_model="numpy"``) silently wraps unsigned integers or returns inf; those warnings are silenced so both
    paths behave alike."""
    if getattr(numba.config, "DISABLE_JIT", False):
        with np.errstate(over="ignore", divide="ignore", invalid="ignore"):
            return kernel(*args)
    return kernel(*args)


@contextlib.contextmanager
def interpreted(*modules: types.ModuleType) -> Iterator[None]:
    saved: list[tuple[types.ModuleType, str, object]] = []
    try:
        for module in modules:
            for name, obj in list(vars(module).items()):
                if isinstance(obj, CPUDispatcher):
                    saved.append((module, name, obj))
                    setattr(module, name, obj.py_func)
        with np.errstate(over="ignore", divide="ignore", invalid="ignore"):
            yield
    finally:
        for module, name, obj in saved:
            setattr(module, name, obj)
