"""Choose, at import time, between a compiled extension and its pure-Python twin.

Every Cython module in ``native/`` (built as ``nexus_fast._native.<name>``) has a pure-Python twin with the same
public names and behaviour, as aiohttp does for its HTTP parser. ``load(name, twin)`` returns the compiled module
unless ``NEXUS_FAST_NO_EXTENSIONS=1`` is set or it failed to build, in which case it returns the twin and records
why. ``report()`` lists every registered module and which implementation is live (``nexus-fast version``).
"""

from __future__ import annotations

import importlib
import os
import types
from dataclasses import dataclass

NO_EXTENSIONS_ENV = "NEXUS_FAST_NO_EXTENSIONS"

# name -> dotted path of the pure-Python twin. Adding a native/<name>.pyx means adding its twin here.
TWINS: dict[str, str] = {
    "selectors": "nexus_fast.balance._selectors_py",
    "pgframe": "nexus_fast.postgres._pgframe_py",
    "ring": "nexus_fast.balance._ring_py",
    "resp": "nexus_fast.redis._resp_py",
    "forward": "nexus_fast.redis._forward_py",
}


@dataclass(frozen=True)
class ExtensionStatus:
    name: str
    compiled: bool
    reason: str


_status: dict[str, ExtensionStatus] = {}


def extensions_disabled() -> bool:
    return os.environ.get(NO_EXTENSIONS_ENV, "") not in ("", "0")


def load_native(name: str) -> types.ModuleType | None:
    """The compiled module ``nexus_fast._native.<name>``, or None if it is unavailable or disabled."""
    if extensions_disabled():
        return None
    try:
        return importlib.import_module(f"nexus_fast._native.{name}")
    except ImportError:
        return None


def load(name: str) -> types.ModuleType:
    """The implementation to use for ``name``: compiled if possible, else the pure-Python twin."""
    twin_path = TWINS[name]
    if extensions_disabled():
        _status[name] = ExtensionStatus(name, False, f"{NO_EXTENSIONS_ENV} is set")
        return importlib.import_module(twin_path)
    try:
        module = importlib.import_module(f"nexus_fast._native.{name}")
    except ImportError as exc:
        _status[name] = ExtensionStatus(name, False, f"not compiled ({exc})")
        return importlib.import_module(twin_path)
    _status[name] = ExtensionStatus(name, True, "compiled")
    return module


def pure(name: str) -> types.ModuleType:
    """The pure-Python twin of ``name`` (tests run every case over both)."""
    return importlib.import_module(TWINS[name])


def report() -> list[ExtensionStatus]:
    """Status of every registered extension, probing those not imported yet."""
    out = []
    for name in sorted(TWINS):
        if name not in _status:
            load(name)
        out.append(_status[name])
    return out
