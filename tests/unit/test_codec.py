"""The value codec (nexus_fast.cache.codec): decode(encode(v)) == v for every value, and the marker rules."""

from __future__ import annotations

import lz4.frame
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from nexus_fast.cache.codec import MARKER, RAW_ESCAPE, Codec, CodecError

# Values that compress (repetitive), that do not (random), and that collide with the markers.
compressible = st.builds(lambda unit, n: unit * n, st.binary(min_size=1, max_size=16), st.integers(1, 600))
marker_prefixed = st.builds(lambda head, tail: head + tail, st.sampled_from([MARKER, RAW_ESCAPE]), st.binary(max_size=64))
values = st.one_of(st.binary(max_size=4096), compressible, marker_prefixed)


@settings(max_examples=300, deadline=None)
@given(values, st.integers(min_value=0, max_value=2048))
def test_round_trip_for_any_value_and_threshold(value: bytes, threshold: int) -> None:
    codec = Codec(threshold=threshold)
    assert Codec.decode(codec.encode(value)) == value


@settings(max_examples=200, deadline=None)
@given(compressible.filter(lambda v: len(v) >= 1024))
def test_large_repetitive_values_are_stored_compressed_and_smaller(value: bytes) -> None:
    codec = Codec()
    stored = codec.encode(value)
    assert stored.startswith(MARKER) and len(stored) < len(value)
    assert Codec.is_encoded(stored)
    assert codec.stats.values_compressed == 1 and codec.stats.bytes_in == len(value)
    assert codec.stats.bytes_saved == len(value) - len(stored) and codec.stats.ratio > 1


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=1023).filter(lambda v: v[:4] not in (MARKER, RAW_ESCAPE)))
def test_values_below_the_threshold_are_stored_untouched(value: bytes) -> None:
    codec = Codec()
    assert codec.encode(value) == value
    assert codec.stats.values_stored_raw == 1


@settings(max_examples=100, deadline=None)
@given(marker_prefixed)
def test_raw_values_that_look_encoded_are_escaped(value: bytes) -> None:
    stored = Codec(threshold=10**9).encode(value)
    assert stored == RAW_ESCAPE + value
    assert Codec.decode(stored) == value


def test_incompressible_large_values_stay_raw() -> None:
    import os

    value = os.urandom(4096)
    codec = Codec()
    assert codec.encode(value) == value or value[:4] in (MARKER, RAW_ESCAPE)
    assert codec.stats.values_compressed == 0


def test_a_corrupt_compressed_value_is_detected() -> None:
    stored = Codec().encode(b"abc" * 1000)
    corrupt = stored[:-6] + bytes(b ^ 0xFF for b in stored[-6:])
    with pytest.raises(CodecError):
        Codec.decode(corrupt)


def test_the_stored_form_is_a_standard_lz4_frame() -> None:
    value = b"nexus " * 500
    stored = Codec().encode(value)
    assert lz4.frame.decompress(stored[len(MARKER):]) == value


def test_negative_threshold_is_refused() -> None:
    with pytest.raises(ValueError):
        Codec(threshold=-1)
