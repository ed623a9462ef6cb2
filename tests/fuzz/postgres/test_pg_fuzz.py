"""Garbage never crashes the proxy: the sans-IO core raises only its protocol error, and on a socket the client
gets a well-formed ErrorResponse (or nothing) and a closed connection, while the proxy keeps serving."""

from __future__ import annotations

import socket
import struct

import psycopg
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from nexus_fast import _extensions
from nexus_fast.postgres import _pgframe_py
from nexus_fast.postgres import protocol as pq

FUZZ = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


@FUZZ
@given(st.lists(st.binary(max_size=64), max_size=6))
def test_login_core_raises_only_protocol_errors(chunks):
    login = pq.ClientLogin()
    try:
        for chunk in chunks:
            for event in login.feed(chunk):
                assert isinstance(event, (pq.SSLRequested, pq.GSSENCRequested, pq.CancelRequested,
                                          pq.StartupReceived, pq.PasswordReceived))
    except pq.ProtocolViolation as exc:
        assert exc.sqlstate and str(exc)


@FUZZ
@given(st.binary(max_size=200))
def test_codecs_raise_only_protocol_errors(data):
    for decode in (pq.decode_parse, pq.decode_bind_names, pq.decode_target, pq.decode_sasl_initial, pq.parse_error_fields):
        try:
            decode(data)
        except pq.ProtocolViolation:
            pass


@FUZZ
@given(st.binary(max_size=300), st.integers(min_value=0, max_value=10))
def test_framing_twins_agree(data, start):
    native = _extensions.load_native("pgframe") or _pgframe_py
    for name in ("scan_server", "scan_client", "split_messages"):
        results = []
        for impl in (native, _pgframe_py):
            try:
                results.append(getattr(impl, name)(data, min(start, len(data))))
            except ValueError:
                results.append("ValueError")
        assert results[0] == results[1], name


def _exchange(port: int, payload: bytes, login: bool = False) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.settimeout(10)
        if login:
            sock.sendall(pq.startup_message({"user": "postgres", "database": "postgres"}))
            greeting = b""
            while not greeting.endswith(pq.ready_for_query(b"I")):
                chunk = sock.recv(65536)
                assert chunk, greeting
                greeting += chunk
        try:
            sock.sendall(payload)
            sock.shutdown(socket.SHUT_WR)
        except OSError:
            pass  # the proxy may already have closed on the first bad bytes
        received = b""
        while True:
            try:
                chunk = sock.recv(65536)
            except ConnectionResetError:
                break
            if not chunk:
                break
            received += chunk
    return received


def _assert_well_formed(reply: bytes) -> None:
    # Single-byte answers to SSLRequest/GSSENCRequest may precede messages.
    while reply[:1] == b"N" and (len(reply) == 1 or reply[1:2] in (b"N", b"E", b"R", b"S", b"K", b"Z")):
        if len(reply) >= 5 and reply[:1] == b"N" and 4 <= int.from_bytes(reply[1:5], "big") < 10000:
            break  # a NoticeResponse, not a bare 'N'
        reply = reply[1:]
    end, _ready, _status, _flags = _pgframe_py.scan_server(reply)
    assert end == len(reply), reply[:80]
    messages, _ = _pgframe_py.split_messages(reply)
    if messages and messages[-1][0] == ord("E"):
        fields = pq.parse_error_fields(reply[messages[-1][1] + 5 : messages[-1][2]])
        assert fields.get("C") and fields.get("M")


def _still_serves(port: int) -> None:
    with psycopg.connect(host="127.0.0.1", port=port, user="postgres", dbname="postgres", connect_timeout=5) as conn:
        assert conn.execute("SELECT 1").fetchone() == (1,)


@FUZZ
@given(st.binary(min_size=1, max_size=300))
def test_garbage_before_login(threaded_plane, garbage):
    _assert_well_formed(_exchange(threaded_plane.port, garbage))


@FUZZ
@given(
    st.lists(
        st.tuples(st.sampled_from(b"QPBDCESHdcfFX!\x00zp"), st.binary(max_size=40), st.booleans()),
        min_size=1, max_size=5,
    )
)
def test_garbage_after_login(threaded_plane, messages):
    payload = b""
    for kind, body, lie in messages:
        length = len(body) + 4 + (7 if lie else 0)  # sometimes a length that does not match the body
        payload += bytes([kind]) + struct.pack("!i", length) + body
    _assert_well_formed(_exchange(threaded_plane.port, payload, login=True))


def test_proxy_still_serves_after_fuzzing(threaded_plane):
    _still_serves(threaded_plane.port)
