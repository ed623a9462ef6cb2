"""The pgframe framer, compiled and pure, over exact wire bytes."""

from __future__ import annotations

import pytest

from nexus_fast.postgres import protocol as pq
from tests.conftest import load_twin, twin_params


@pytest.fixture(params=twin_params("pgframe"))
def pgframe(request):
    return load_twin("pgframe", request.param)


SERVER_REPLY = (
    pq.message(b"T", b"\x00\x01x\x00" + b"\x00" * 18)
    + pq.message(b"D", b"\x00\x01\x00\x00\x00\x011")
    + pq.message(b"C", b"SELECT 1\x00")
    + pq.ready_for_query(b"T")
)


def test_scan_server_counts_ready_and_status(pgframe):
    end, ready, status, flags = pgframe.scan_server(SERVER_REPLY)
    assert (end, ready, status, flags) == (len(SERVER_REPLY), 1, ord("T"), 0)


def test_scan_server_stops_at_partial_message(pgframe):
    data = SERVER_REPLY + pq.ready_for_query(b"I")[:3]
    end, ready, status, _ = pgframe.scan_server(data)
    assert end == len(SERVER_REPLY) and ready == 1 and status == ord("T")
    end2, ready2, status2, _ = pgframe.scan_server(data[:-3] + pq.ready_for_query(b"I"), end)
    assert ready2 == 1 and status2 == ord("I") and end2 == len(SERVER_REPLY) + 6


def test_scan_server_flags(pgframe):
    data = (pq.error_response("x", "42000", "ERROR") + pq.parameter_status("a", "b") + pq.message(b"1")
            + pq.message(b"3") + pq.message(b"G", b"\x00\x00\x00") + pq.message(b"A", b"\x00\x00\x00\x01c\x00\x00")
            + pq.notice_response("n"))
    _, ready, status, flags = pgframe.scan_server(data)
    assert ready == 0 and status == 0
    for flag in ("S_ERROR", "S_PARAMETER_STATUS", "S_PARSE_COMPLETE", "S_CLOSE_COMPLETE", "S_COPY_IN",
                 "S_NOTIFICATION", "S_NOTICE"):
        assert flags & getattr(pgframe, flag), flag
    assert not flags & pgframe.S_COPY_OUT


def test_scan_client_counts_syncs_and_flags(pgframe):
    data = pq.parse("s1", b"select $1", b"\x00\x01\x00\x00\x00\x17") + pq.message(b"B", b"\x00s1\x00" + b"\x00" * 6) \
        + pq.message(b"E", b"\x00\x00\x00\x00\x00") + pq.sync() + pq.query("select 1")
    end, syncs, flags, last = pgframe.scan_client(data)
    assert end == len(data) and syncs == 2 and last == ord("Q")
    assert pgframe.scan_client(data[: data.index(pq.sync())])[3] == ord("E")
    for flag in ("C_PARSE", "C_BIND", "C_EXECUTE", "C_SYNC", "C_QUERY"):
        assert flags & getattr(pgframe, flag), flag
    assert not flags & (pgframe.C_TERMINATE | pgframe.C_UNKNOWN)
    assert pgframe.scan_client(pq.terminate())[2] & pgframe.C_TERMINATE
    assert pgframe.scan_client(pq.message(b"!"))[2] & pgframe.C_UNKNOWN


@pytest.mark.parametrize("length", [0, 3, 0x7FFFFFFF])
def test_impossible_length_is_refused(pgframe, length):
    data = b"Q" + length.to_bytes(4, "big") + b"x" * 8
    for scan in (pgframe.scan_client, pgframe.scan_server, pgframe.split_messages):
        with pytest.raises(ValueError):
            scan(data)


def test_split_messages_offsets(pgframe):
    a, b = pq.query("select 1"), pq.sync()
    messages, end = pgframe.split_messages(a + b + b"S\x00")
    assert messages == [(ord("Q"), 0, len(a)), (ord("S"), len(a), len(a) + len(b))]
    assert end == len(a) + len(b)


def test_empty_input(pgframe):
    assert pgframe.scan_server(b"") == (0, 0, 0, 0)
    assert pgframe.scan_client(bytearray()) == (0, 0, 0, 0)
    assert pgframe.split_messages(memoryview(b"")) == ([], 0)
