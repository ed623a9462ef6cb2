"""Durations and sizes with explicit units, as config values are written: ``"30s"``, ``"250ms"``, ``"64MiB"``.

Durations must carry a unit (a bare ``30`` is ambiguous between PgBouncer's seconds and twemproxy's
milliseconds, which is exactly the mistake this rule prevents). Sizes accept a bare integer as bytes.
The peer-format importers convert their own unitless numbers with the peer's meaning before validation.
"""

from __future__ import annotations

import re
from typing import Annotated, Any

from pydantic import BeforeValidator, PlainSerializer

_DURATION_UNITS = {"us": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "min": 60.0, "h": 3600.0, "d": 86400.0}
_SIZE_UNITS = {
    "b": 1, "kb": 1000, "mb": 1000**2, "gb": 1000**3,
    "kib": 1024, "mib": 1024**2, "gib": 1024**3, "k": 1024, "m": 1024**2, "g": 1024**3,
}
_NUMBER_UNIT = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([a-zA-Z]+)\s*$")


def parse_duration(value: Any) -> float:
    """Seconds as a float from ``"30s"``, ``"250ms"``, ``"1.5m"``, ``"2h"``; ``"0"`` means zero (disabled)."""
    if isinstance(value, bool):
        raise ValueError("a duration must be a string with a unit, such as \"30s\" or \"250ms\"")
    if isinstance(value, (int, float)):
        if value == 0:
            return 0.0
        raise ValueError(f"{value!r} has no unit; write it as \"{value}s\" or \"{value}ms\"")
    if not isinstance(value, str):
        raise ValueError("a duration must be a string with a unit, such as \"30s\" or \"250ms\"")
    if value.strip() == "0":
        return 0.0
    match = _NUMBER_UNIT.match(value)
    if not match or match.group(2).lower() not in _DURATION_UNITS:
        raise ValueError(f"{value!r} is not a duration; use a number and one of us, ms, s, m, h, d (e.g. \"30s\")")
    return float(match.group(1)) * _DURATION_UNITS[match.group(2).lower()]


def parse_size(value: Any) -> int:
    """Bytes as an int from ``"64MiB"``, ``"1KiB"``, ``"512B"``, or a bare integer of bytes."""
    if isinstance(value, bool):
        raise ValueError("a size must be a number of bytes or a string such as \"64MiB\"")
    if isinstance(value, int):
        if value < 0:
            raise ValueError("a size cannot be negative")
        return value
    if not isinstance(value, str):
        raise ValueError("a size must be a number of bytes or a string such as \"64MiB\"")
    if value.strip().isdigit():
        return int(value.strip())
    match = _NUMBER_UNIT.match(value)
    if not match or match.group(2).lower() not in _SIZE_UNITS:
        raise ValueError(f"{value!r} is not a size; use a number and one of B, KiB, MiB, GiB, KB, MB, GB")
    return int(float(match.group(1)) * _SIZE_UNITS[match.group(2).lower()])


def format_duration(seconds: float) -> str:
    if seconds == 0:
        return "0"
    if seconds < 1 and round(seconds * 1000, 6) == int(round(seconds * 1000, 6)):
        return f"{round(seconds * 1000)}ms"
    if seconds == int(seconds):
        return f"{int(seconds)}s"
    return f"{round(seconds * 1000)}ms"


def format_size(size: int) -> str:
    for unit, factor in (("GiB", 1024**3), ("MiB", 1024**2), ("KiB", 1024)):
        if size and size % factor == 0:
            return f"{size // factor}{unit}"
    return f"{size}B"


# Field types for the schema: parsed from text, written back with their unit.
Duration = Annotated[float, BeforeValidator(parse_duration), PlainSerializer(format_duration, return_type=str)]
Size = Annotated[int, BeforeValidator(parse_size), PlainSerializer(format_size, return_type=str)]
