"""Compile flags for every Numba kernel in ``nexus_fast.kernels``, in one place (as ``stumpy/config.py`` does).

``cache=True`` writes compiled machine code beside the module (``__pycache__``) so a process loads it instead of
compiling again, and no request path ever pays JIT compilation. ``nogil=True`` lets a kernel run in a worker thread
while the event loop keeps serving. ``fastmath`` stays off: the property tests compare kernels with the references
within a tight tolerance, and reassociated float sums would loosen it for no measurable gain here.

``NUMBA_DISABLE_JIT=1`` (Numba's own switch) runs every kernel as plain Python, which is how coverage sees them.
"""

from __future__ import annotations

from typing import Any

NJIT_OPTIONS: dict[str, Any] = {"cache": True, "nogil": True, "fastmath": False, "error_model": "numpy"}
