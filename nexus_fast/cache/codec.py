"""Transparent value compression: lz4 frames above a size threshold, behind a self-describing marker.

A stored value is either the client's bytes untouched, or ``MARKER + lz4.frame(value)``. The marker is 4 bytes
(``b"\\x00NXZ"``) that no lz4 frame or typical payload starts with; a raw value that happens to begin with the
marker is itself wrapped (``RAW_ESCAPE``) so ``decode(encode(v)) == v`` holds for every input, which the property
tests check. lz4 frame (not block) is used because frames carry their content size and a checksum, so a corrupted
value is detected instead of decoded into garbage. The python-lz4 binding releases the GIL and is the reference
binding of the C library, so there is no Cython layer here: it would add nothing.
"""

from __future__ import annotations

from dataclasses import dataclass

import lz4.frame

MARKER = b"\x00NXZ"
RAW_ESCAPE = b"\x00NXR"
DEFAULT_THRESHOLD = 1024


class CodecError(ValueError):
    """A value carries the compression marker but is not a valid compressed frame."""


@dataclass
class CodecStats:
    values_compressed: int = 0
    values_stored_raw: int = 0
    bytes_in: int = 0  # original bytes of compressed values
    bytes_out: int = 0  # stored bytes of compressed values

    @property
    def ratio(self) -> float:
        return self.bytes_in / self.bytes_out if self.bytes_out else 1.0

    @property
    def bytes_saved(self) -> int:
        return self.bytes_in - self.bytes_out


class Codec:
    """Compress values of at least ``threshold`` bytes when that makes them smaller; decode anything encoded."""

    def __init__(self, threshold: int = DEFAULT_THRESHOLD, level: int = 0) -> None:
        if threshold < 0:
            raise ValueError("threshold must be >= 0")
        self.threshold = threshold
        self.level = level
        self.stats = CodecStats()

    def encode(self, value: bytes) -> bytes:
        if len(value) >= self.threshold:
            packed = MARKER + lz4.frame.compress(value, compression_level=self.level, content_checksum=True)
            if len(packed) < len(value):
                self.stats.values_compressed += 1
                self.stats.bytes_in += len(value)
                self.stats.bytes_out += len(packed)
                return packed
        self.stats.values_stored_raw += 1
        if value[:4] in (MARKER, RAW_ESCAPE):
            return RAW_ESCAPE + value
        return value

    @staticmethod
    def is_encoded(value: bytes) -> bool:
        return value[:4] in (MARKER, RAW_ESCAPE)

    @staticmethod
    def decode(value: bytes) -> bytes:
        head = value[:4]
        if head == MARKER:
            try:
                return lz4.frame.decompress(value[4:])
            except RuntimeError as exc:
                raise CodecError(f"corrupt compressed value: {exc}") from None
        if head == RAW_ESCAPE:
            return value[4:]
        return value
