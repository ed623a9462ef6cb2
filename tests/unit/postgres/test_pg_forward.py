"""The per-transaction callbacks (``ClientSession._pump_fresh`` / ``on_server_data``) driven with wire bytes, no sockets.

A real ``ClientSession``, ``Pool`` and ``ServerConnection`` are wired to transports that record what is written,
so each test checks the bytes each side receives and the pool/session state after every step.
"""

from __future__ import annotations

from typing import Any

import pytest

from nexus_fast.postgres import protocol as pq
from nexus_fast.postgres import session as session_mod
from nexus_fast.postgres.config import PostgresConfig
from nexus_fast.postgres.pool import Pool
from nexus_fast.postgres.server_conn import ServerConnection, ServerLogin
from tests.conftest import load_twin, twin_params


class Hot:
    """The two per-transaction callbacks, called as the transports call them."""

    @staticmethod
    def pump_fresh(session: session_mod.ClientSession, data: bytes) -> None:
        session._pump_fresh(data)

    @staticmethod
    def on_server_data(session: session_mod.ClientSession, data: bytes) -> None:
        session.on_server_data(data)


@pytest.fixture(params=twin_params("pgframe"))
def fwd(request, monkeypatch):
    """Each test runs over the compiled and the pure framer (the scans the callbacks rely on)."""
    framer = load_twin("pgframe", request.param)
    monkeypatch.setattr(session_mod, "_scan_server", framer.scan_server)
    monkeypatch.setattr(session_mod, "_scan_client", framer.scan_client)
    monkeypatch.setattr(session_mod.fr, "scan_client", framer.scan_client)
    monkeypatch.setattr(session_mod.fr, "split_messages", framer.split_messages)
    return Hot


class RecordingTransport:
    def __init__(self) -> None:
        self.out: list[bytes] = []
        self.closed = False

    def write(self, data: Any) -> None:
        self.out.append(bytes(data))

    def is_closing(self) -> bool:
        return self.closed

    def close(self) -> None:
        self.closed = True

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass

    def take(self) -> bytes:
        data = b"".join(self.out)
        self.out.clear()
        return data


class Plane:
    def __init__(self, config: PostgresConfig) -> None:
        self.config = config
        self.sessions: set[Any] = set()
        self.cancel_keys: dict[Any, Any] = {}
        self.spawned = 0

    def spawn(self, coro: Any) -> None:
        coro.close()
        self.spawned += 1


def make(pool_mode: str = "transaction", servers: int = 1) -> tuple[session_mod.ClientSession, Pool, list[ServerConnection]]:
    config = PostgresConfig(
        pool_mode=pool_mode, databases={"*": {"servers": [{"host": "127.0.0.1", "port": 5432}]}}
    )
    login = ServerLogin("127.0.0.1", 5432, "u", "db")
    pool = Pool("db", "u", 0, "primary", login, config.pool_settings("db", "u"), config)
    conns = []
    for pid in range(servers):
        conn = ServerConnection(RecordingTransport(), login, {}, pid + 1, 7)
        conn.pool = pool
        pool.idle.append(conn)
        conns.append(conn)
    session = session_mod.ClientSession(Plane(config))  # type: ignore[arg-type]
    session.transport = RecordingTransport()
    session.state = session_mod.READY
    session.pool_mode = pool_mode
    session.pools[0] = pool
    return session, pool, conns


SELECT = pq.query("SELECT 1")
REPLY_BODY = (
    pq.message(b"T", b"\x00\x01x\x00" + b"\x00" * 18)
    + pq.message(b"D", b"\x00\x01\x00\x00\x00\x011")
    + pq.message(b"C", b"SELECT 1\x00")
)


def test_a_simple_query_borrows_forwards_and_returns_the_server(fwd):
    session, pool, (conn,) = make()
    fwd.pump_fresh(session, SELECT)
    assert conn.transport.take() == SELECT
    assert session.server is conn and conn.session is session and conn in pool.active
    assert session.pending == 1 and pool.stats.total_received == len(SELECT)
    reply = REPLY_BODY + pq.ready_for_query(b"I")
    fwd.on_server_data(session, reply)
    assert session.transport.take() == reply
    assert session.server is None and conn.session is None and list(pool.idle) == [conn] and not pool.active
    assert session.pending == 0 and pool.stats.total_sent == len(reply)
    assert (pool.stats.total_xact_count, pool.stats.total_query_count) == (1, 1)
    assert sum(pool.metrics.query.counts) == 1 and sum(pool.metrics.xact.counts) == 1
    assert conn.prepared.syncs_sent == 1 and conn.prepared.ready_seen == 1 and conn.status == b"I"


def test_a_reply_split_anywhere_is_forwarded_in_whole_messages(fwd):
    reply = REPLY_BODY + pq.ready_for_query(b"I")
    for cut in range(1, len(reply)):
        session, pool, (conn,) = make()
        fwd.pump_fresh(session, SELECT)
        fwd.on_server_data(session, reply[:cut])
        first = session.transport.take()
        assert reply.startswith(first) and session.server is conn  # not released before ReadyForQuery
        fwd.on_server_data(session, reply[cut:])
        assert first + session.transport.take() == reply
        assert session.server is None and list(pool.idle) == [conn] and session.srv_tail == b""


def test_a_transaction_keeps_its_server_until_idle(fwd):
    session, pool, (conn,) = make()
    fwd.pump_fresh(session, pq.query("BEGIN"))
    fwd.on_server_data(session, pq.message(b"C", b"BEGIN\x00") + pq.ready_for_query(b"T"))
    assert session.server is conn and session.route_state.in_transaction and conn.status == b"T"
    assert pool.stats.total_query_count == 1 and pool.stats.total_xact_count == 0
    fwd.pump_fresh(session, SELECT)
    assert conn.transport.take() == pq.query("BEGIN") + SELECT
    fwd.on_server_data(session, REPLY_BODY + pq.ready_for_query(b"T"))
    fwd.pump_fresh(session, pq.query("COMMIT"))
    fwd.on_server_data(session, pq.message(b"C", b"COMMIT\x00") + pq.ready_for_query(b"I"))
    assert session.server is None and not session.route_state.in_transaction and list(pool.idle) == [conn]
    assert (pool.stats.total_query_count, pool.stats.total_xact_count) == (3, 1)


def test_pipelined_syncs_release_after_the_last_ready(fwd):
    session, pool, (conn,) = make()
    fwd.pump_fresh(session, SELECT + SELECT)
    assert session.pending == 2
    fwd.on_server_data(session, REPLY_BODY + pq.ready_for_query(b"I"))
    assert session.pending == 1 and session.server is conn
    fwd.on_server_data(session, REPLY_BODY + pq.ready_for_query(b"I"))
    assert session.pending == 0 and session.server is None and list(pool.idle) == [conn]


def test_an_unsynced_extended_batch_keeps_the_server(fwd):
    session, pool, (conn,) = make()
    batch = pq.parse(b"", b"SELECT 1", b"\x00\x00") + pq.message(b"B", b"\x00\x00\x00\x00\x00\x00\x00\x00")
    fwd.pump_fresh(session, batch + pq.message(b"E", b"\x00\x00\x00\x00\x00") + pq.message(b"H"))
    assert conn.unsynced and session.pending == 0
    fwd.pump_fresh(session, pq.message(b"S"))
    assert not conn.unsynced and session.pending == 1
    fwd.on_server_data(session, pq.message(b"1") + pq.message(b"2") + REPLY_BODY + pq.ready_for_query(b"I"))
    assert session.server is None and list(pool.idle) == [conn]


async def test_no_idle_server_falls_back_to_the_queued_path(fwd):
    session, pool, (conn,) = make()
    pool.paused = True  # as after PAUSE: nothing is lent, nothing is opened
    fwd.pump_fresh(session, SELECT)
    assert session.server is None and bytes(session.inbuf) == SELECT and session.waiting and len(pool.waiters) == 1
    assert conn.transport.take() == b""
    session.connection_lost(None)
    assert not pool.waiters


def test_a_partial_client_message_is_buffered(fwd):
    session, _pool, (conn,) = make()
    fwd.pump_fresh(session, SELECT[:4])
    assert bytes(session.inbuf) == SELECT[:4] and session.server is None and conn.transport.take() == b""


def test_an_invalid_server_length_is_fatal_and_the_server_not_reused(fwd):
    session, _pool, (conn,) = make()
    fwd.pump_fresh(session, SELECT)
    fwd.on_server_data(session, b"Z\x00\x00\x00\x01I")
    assert conn.dirty and session.transport.closed
    assert session.transport.take().startswith(b"E")


def test_an_invalid_client_length_is_fatal(fwd):
    session, _pool, (conn,) = make()
    fwd.pump_fresh(session, b"Q\x00\x00\x00\x02")
    assert session.transport.closed and session.transport.take().startswith(b"E")
    assert conn.transport.take() == b""


def test_statement_mode_refuses_a_transaction_block(fwd):
    session, _pool, _conns = make("statement")
    fwd.pump_fresh(session, pq.query("BEGIN"))
    fwd.on_server_data(session, pq.message(b"C", b"BEGIN\x00") + pq.ready_for_query(b"T"))
    out = session.transport.take()
    assert out.startswith(pq.message(b"C", b"BEGIN\x00")) and b"transaction blocks not allowed" in out
    assert session.transport.closed


def test_session_mode_keeps_the_server(fwd):
    session, pool, (conn,) = make("session")
    fwd.pump_fresh(session, SELECT)
    fwd.on_server_data(session, REPLY_BODY + pq.ready_for_query(b"I"))
    assert session.server is conn and not pool.idle


def test_parameter_status_is_tracked(fwd):
    session, pool, (conn,) = make()
    fwd.pump_fresh(session, pq.query("SET TimeZone TO 'UTC'"))
    reply = pq.message(b"C", b"SET\x00") + pq.message(b"S", b"TimeZone\x00UTC\x00") + pq.ready_for_query(b"I")
    fwd.on_server_data(session, reply)
    assert session.transport.take() == reply
    assert session.params["TimeZone"] == "UTC" and conn.params["TimeZone"] == "UTC" and list(pool.idle) == [conn]


def test_query_and_transaction_latency_are_both_observed(fwd):
    session, pool, (_conn,) = make()
    fwd.pump_fresh(session, pq.query("BEGIN"))
    fwd.on_server_data(session, pq.message(b"C", b"BEGIN\x00") + pq.ready_for_query(b"T"))
    fwd.pump_fresh(session, pq.query("COMMIT"))
    session.query_start -= 0.2  # the second request "ran" 200 ms, the transaction at least that
    session.xact_start -= 3.0
    fwd.on_server_data(session, pq.message(b"C", b"COMMIT\x00") + pq.ready_for_query(b"I"))
    assert pool.stats.total_xact_time >= 3_000_000 and 200_000 <= pool.stats.total_query_time < 3_000_000
    assert pool.metrics.xact.sum >= 3.0 and 0.2 <= pool.metrics.query.sum < 3.0
    assert sum(pool.metrics.xact.counts) == 1 and sum(pool.metrics.query.counts) == 2
