"""The sans-IO login state machine and message codecs, fed raw bytes."""

from __future__ import annotations

import struct

import pytest

from nexus_fast.postgres import protocol as pq
from nexus_fast.postgres.server_conn import PreparedTracker


def test_startup_message_roundtrip():
    login = pq.ClientLogin()
    events = login.feed(pq.startup_message({"user": "alice", "database": "appdb", "application_name": "x"}))
    assert events == [pq.StartupReceived({"user": "alice", "database": "appdb", "application_name": "x"}, 0)]
    assert events[0].database == "appdb"


def test_startup_in_pieces_and_default_database():
    packet = pq.startup_message({"user": "bob"})
    login = pq.ClientLogin()
    events: list = []
    for i in range(len(packet)):
        events += login.feed(packet[i : i + 1])
    assert len(events) == 1 and events[0].database == "bob"


def test_ssl_then_startup():
    login = pq.ClientLogin()
    assert login.feed(pq.ssl_request()) == [pq.SSLRequested()]
    assert isinstance(login.feed(pq.startup_message({"user": "u"}))[0], pq.StartupReceived)


def test_gssenc_and_cancel():
    login = pq.ClientLogin()
    assert login.feed(struct.pack("!ii", 8, pq.GSSENC_REQUEST)) == [pq.GSSENCRequested()]
    assert pq.ClientLogin().feed(pq.cancel_request(42, 0xDEADBEEF)) == [pq.CancelRequested(42, 0xDEADBEEF)]


def test_password_after_startup():
    login = pq.ClientLogin()
    login.feed(pq.startup_message({"user": "u"}))
    assert login.feed(pq.password_message(b"md5abc\x00")) == [pq.PasswordReceived(b"md5abc\x00")]


@pytest.mark.parametrize(
    "data",
    [
        struct.pack("!ii", 4, 0),  # length below minimum
        struct.pack("!ii", 100000, pq.PROTOCOL_3_0),  # too long
        struct.pack("!ii", 8, 2 << 16),  # protocol 2
        struct.pack("!ii", 9, pq.PROTOCOL_3_0) + b"\x00",  # no user
        struct.pack("!ii", 12, pq.PROTOCOL_3_0) + b"user",  # unterminated
    ],
)
def test_bad_startup_is_a_protocol_violation(data):
    with pytest.raises(pq.ProtocolViolation):
        pq.ClientLogin().feed(data)


def test_query_instead_of_password_is_refused():
    login = pq.ClientLogin()
    login.feed(pq.startup_message({"user": "u"}))
    with pytest.raises(pq.ProtocolViolation):
        login.feed(pq.query("select 1"))


def test_error_response_fields():
    data = pq.error_response("boom", "57014", "ERROR")
    assert data[0:1] == b"E"
    fields = pq.parse_error_fields(data[5:])
    assert fields["S"] == "ERROR" and fields["C"] == "57014" and fields["M"] == "boom"


def test_parse_bind_describe_codecs():
    body = pq.parse("s1", b"select $1", b"\x00\x01\x00\x00\x00\x17")[5:]
    msg = pq.decode_parse(body)
    assert (msg.name, msg.sql, msg.param_types) == (b"s1", b"select $1", b"\x00\x01\x00\x00\x00\x17")
    with pytest.raises(pq.ProtocolViolation):
        pq.decode_parse(b"s1\x00select\x00\x00\x02")
    portal, stmt, pos = pq.decode_bind_names(b"p\x00s1\x00rest")
    assert (portal, stmt, b"p\x00s1\x00rest"[pos:]) == (b"p", b"s1", b"rest")
    assert pq.decode_target(b"Sname\x00") == (b"S", b"name")
    with pytest.raises(pq.ProtocolViolation):
        pq.decode_target(b"Xname\x00")


def test_sasl_initial_decode():
    data = pq.sasl_initial_response("SCRAM-SHA-256", b"n,,n=,r=abc")[5:]
    assert pq.decode_sasl_initial(data) == ("SCRAM-SHA-256", b"n,,n=,r=abc")


def test_prepared_tracker_forgets_failed_parses():
    tracker = PreparedTracker()
    # Parse s_a (ok) and s_b (fails), each followed by a Sync.
    tracker.lru[b"s_a"] = None
    tracker.parse_queue.append((0, b"s_a", False))
    tracker.parses_sent = 1
    tracker.syncs_sent = 1
    tracker.marks.append((1, 1, 0))
    tracker.lru[b"s_b"] = None
    tracker.parse_queue.append((1, b"s_b", True))
    tracker.parses_sent = 2
    tracker.syncs_sent = 2
    tracker.marks.append((2, 2, 0))
    # ParseComplete for s_a, then ReadyForQuery
    assert tracker.parse_queue.popleft()[1] == b"s_a"
    tracker.ready_seen = 1
    tracker.reconcile()
    assert b"s_a" in tracker.lru and tracker.busy
    # s_b got an ErrorResponse (no ParseComplete) then ReadyForQuery: it is forgotten.
    tracker.ready_seen = 2
    tracker.reconcile()
    assert b"s_b" not in tracker.lru and not tracker.busy and not tracker.marks
