"""Durations and sizes with explicit units: parsing, refusals, and formatting that parses back to the same value."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from nexus_fast.config.units import format_duration, format_size, parse_duration, parse_size


@pytest.mark.parametrize(("text", "seconds"), [
    ("30s", 30.0), ("250ms", 0.25), ("1.5m", 90.0), ("2min", 120.0), ("2h", 7200.0), ("1d", 86400.0),
    ("100us", 0.0001), ("0", 0.0), (0, 0.0), (" 5 s ", 5.0), ("10MS", 0.01),
])
def test_durations_parse(text, seconds) -> None:
    assert parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize(("value", "message"), [
    (30, "has no unit"), (1.5, "has no unit"), (True, "must be a string"), ("30", "is not a duration"),
    ("30 parsecs", "is not a duration"), ("-5s", "is not a duration"), (None, "must be a string"),
])
def test_durations_without_a_valid_unit_are_refused(value, message) -> None:
    with pytest.raises(ValueError, match=message):
        parse_duration(value)


@pytest.mark.parametrize(("text", "size"), [
    ("64MiB", 64 * 1024**2), ("1KiB", 1024), ("512B", 512), ("1GB", 10**9), ("2k", 2048), (4096, 4096), ("17", 17),
])
def test_sizes_parse(text, size) -> None:
    assert parse_size(text) == size


@pytest.mark.parametrize("value", [-1, "lots", "5 parsecs", 1.5, True])
def test_bad_sizes_are_refused(value) -> None:
    with pytest.raises(ValueError):
        parse_size(value)


@settings(max_examples=300, deadline=None)
@given(st.integers(min_value=0, max_value=10**7))
def test_formatted_milliseconds_parse_back(ms: int) -> None:
    seconds = ms / 1000
    assert parse_duration(format_duration(seconds)) == pytest.approx(seconds)


@settings(max_examples=300, deadline=None)
@given(st.integers(min_value=0, max_value=10**6))
def test_formatted_whole_seconds_parse_back(s: int) -> None:
    assert parse_duration(format_duration(float(s))) == s


@settings(max_examples=300, deadline=None)
@given(st.integers(min_value=0, max_value=2**50))
def test_formatted_sizes_parse_back(size: int) -> None:
    assert parse_size(format_size(size)) == size


def test_formatting_picks_the_natural_unit() -> None:
    assert format_duration(30.0) == "30s"
    assert format_duration(0.25) == "250ms"
    assert format_duration(0) == "0"
    assert format_size(64 * 1024**2) == "64MiB"
    assert format_size(1000) == "1000B"
