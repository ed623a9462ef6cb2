"""Garbage and arbitrary splits fed to the RESP parsers: a clear error or correct commands, never a crash or hang."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.conftest import load_twin, twin_params


@pytest.fixture(scope="module", params=twin_params("resp"))
def resp(request):
    return load_twin("resp", request.param)


@settings(max_examples=300, deadline=None)
@given(data=st.binary(max_size=512), cut=st.integers(min_value=1, max_value=64))
def test_request_garbage(resp, data, cut):
    parser = resp.RequestParser(max_inline=256)
    for i in range(0, len(data), cut):
        for args, raw in parser.feed(data[i:i + cut]):
            assert isinstance(args, list) and all(isinstance(a, bytes) for a in args)
            assert raw.startswith(b"*")
    assert parser.error is None or isinstance(parser.error, str)
    assert parser.pending() <= max(len(data), 0)


@settings(max_examples=300, deadline=None)
@given(data=st.binary(max_size=512), cut=st.integers(min_value=1, max_value=64))
def test_reply_garbage(resp, data, cut):
    scanner = resp.ReplyScanner()
    for i in range(0, len(data), cut):
        for raw in scanner.feed(data[i:i + cut]):
            assert raw and raw.endswith(b"\r\n")


commands = st.lists(st.lists(st.binary(max_size=40), min_size=1, max_size=5), min_size=1, max_size=10)


@settings(max_examples=200, deadline=None)
@given(cmds=commands, cut=st.integers(min_value=1, max_value=50))
def test_valid_pipelines_round_trip(resp, cmds, cut):
    stream = b"".join(resp.encode_command(c) for c in cmds)
    parser = resp.RequestParser()
    got = []
    for i in range(0, len(stream), cut):
        got += parser.feed(stream[i:i + cut])
    assert [a for a, _ in got] == cmds
    assert [r for _, r in got] == [resp.encode_command(c) for c in cmds]
    assert parser.error is None
