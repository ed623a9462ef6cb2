"""The forwarding path's per-request steps (``native/forward.pyx`` and its pure twin), driven without sockets."""

from __future__ import annotations

from collections import deque

import pytest

from nexus_fast.redis.commands import SINGLE_KEY
from nexus_fast.redis.protocol import RequestParser
from tests.conftest import load_twin, twin_params


@pytest.fixture(params=twin_params("forward"))
def forward(request):
    return load_twin("forward", request.param)


class Session:
    def __init__(self) -> None:
        self.queue: deque = deque()
        self.replies: list = []

    def reply_ready(self, pending) -> None:
        self.replies.append(pending.reply)


class Node:
    def __init__(self, name: str) -> None:
        self.name = name
        self.sent: list = []
        self.conns: dict = {2: [None], 3: [None]}  # no open connection: the compiled twin calls send() too

    def send(self, pending, proto: int = 2) -> None:
        self.sent.append((pending.request, proto))


def test_pending_defaults(forward):
    pending = forward.Pending(b"*1\r\n$4\r\nPING\r\n", None)
    assert (pending.request, pending.handler, pending.reply, pending.failed, pending.attempts) == (
        b"*1\r\n$4\r\nPING\r\n", None, None, False, 0)
    pending.reply, pending.failed, pending.attempts = b"+OK\r\n", True, 2
    assert (pending.reply, pending.failed, pending.attempts) == (b"+OK\r\n", True, 2)


def test_single_key_commands_go_to_their_nodes_until_one_is_not(forward):
    nodes = [Node("a"), Node("b"), None]  # the trailing None: what a lookup of -1 (no live node) finds
    owner = {b"k1": 0, b"k2": 1, b"gone": -1}
    commands = RequestParser().feed(b"GET k1\r\nSET k2 v\r\nget k1\r\nGET\r\nGET k2\r\nPING\r\nGET gone\r\n")
    session = Session()
    args = (session, commands)
    i = forward.forward_single_key(*args, 0, SINGLE_KEY, owner.__getitem__, nodes, 3)
    assert i == 3  # "GET" without its key has the wrong arity: back to the session's general path
    assert nodes[0].sent == [(commands[0][1], 3), (commands[2][1], 3)] and nodes[1].sent == [(commands[1][1], 3)]
    assert [p.request for p in session.queue] == [c[1] for c in commands[:3]]
    assert all(p.handler is session and p.reply is None for p in session.queue)
    assert forward.forward_single_key(*args, 4, SINGLE_KEY, owner.__getitem__, nodes, 2) == 5  # PING: not a key
    assert forward.forward_single_key(*args, 6, SINGLE_KEY, owner.__getitem__, nodes, 2) == 6  # no live node
    assert forward.forward_single_key(*args, 7, SINGLE_KEY, owner.__getitem__, nodes, 2) == 7  # the end
    assert len(session.queue) == 4


class Router:
    def __init__(self) -> None:
        self.redirected: list = []

    def redirect(self, pending, raw: bytes, proto: int) -> bool:
        assert proto == 3  # followed over a connection of the client's RESP version
        self.redirected.append(raw)
        return raw.startswith(b"-MOVED")


class Conn:
    def __init__(self, redirects: bool) -> None:
        self.queue: deque = deque()
        self.redirects = redirects
        self.proto = 3
        self.node = type("N", (), {"address": "127.0.0.1:7000", "router": Router()})()
        self.aborted: list = []

    def abort(self, message: str) -> None:
        self.aborted.append(message)


def test_replies_matched_in_order_and_redirects_followed(forward):
    session = Session()
    conn = Conn(redirects=True)
    conn.queue.extend(forward.Pending(b"x", session) for _ in range(4))
    assert forward.deliver(conn, [b"+OK\r\n", b"-MOVED 3999 127.0.0.1:7001\r\n", b"-ASK 1 h:1\r\n", b":1\r\n"])
    # the MOVED request is the router's now; the ASK the router declined goes to the client as is
    assert session.replies == [b"+OK\r\n", b"-ASK 1 h:1\r\n", b":1\r\n"]
    assert conn.node.router.redirected == [b"-MOVED 3999 127.0.0.1:7001\r\n", b"-ASK 1 h:1\r\n"]
    ring = Conn(redirects=False)
    ring.queue.append(forward.Pending(b"x", session))
    assert forward.deliver(ring, [b"-MOVED 1 h:1\r\n"]) and ring.node.router.redirected == []


def test_a_reply_nobody_asked_for_aborts(forward):
    conn = Conn(redirects=False)
    session = Session()
    conn.queue.append(forward.Pending(b"x", session))
    assert forward.deliver(conn, [b"+OK\r\n", b"+OK\r\n"]) is False
    assert session.replies == [b"+OK\r\n"] and "nobody asked for" in conn.aborted[0]


class Transport:
    def __init__(self) -> None:
        self.written: list[bytes] = []

    def write(self, data: bytes) -> None:
        self.written.append(data)

    def is_closing(self) -> bool:
        return False

    def close(self) -> None:
        pass


async def test_sends_join_the_open_connection_and_its_next_coalesced_write(forward, monkeypatch):
    """Over the real Node and ServerConnection (no socket: a recording transport), both twins leave the same
    state: requests counted, FIFO filled, one write per loop turn carrying every request."""
    import asyncio

    from nexus_fast.redis import connection
    from nexus_fast.redis.config import RedisPoolConfig
    from nexus_fast.redis.router import RingRouter

    monkeypatch.setattr(connection, "Pending", forward.Pending)
    router = RingRouter("p", RedisPoolConfig(servers=["127.0.0.1:1:1 a", "127.0.0.1:2:1 b"]))
    session = Session()
    for node in router.nodes:  # an open connection per node, as after connection_made
        conn = connection.ServerConnection(node, 2, redirects=False)
        conn.transport = Transport()  # type: ignore[assignment]
        node.conns[2][0] = conn
    commands = RequestParser().feed(b"".join(b"SET key:%d v\r\n" % i for i in range(20)))
    fast_nodes = [*router.nodes, None]
    assert forward.forward_single_key(session, commands, 0, SINGLE_KEY, router.ring.lookup, fast_nodes, 2) == 20
    await asyncio.sleep(0)  # the coalesced write runs from call_soon
    sent = 0
    for node in router.nodes:
        conn = node.conns[2][0]
        assert node.requests == len(conn.queue) == conn.written and conn.written > 0
        assert conn.transport.written == [b"".join(p.request for p in conn.queue)]  # one write per loop turn
        sent += node.requests
    assert sent == 20 and [p.request for p in session.queue] == [c[1] for c in commands]
    for node in router.nodes:
        node.close()
        await node.wait_closed()


class ClientTransport(Transport):
    def __init__(self) -> None:
        super().__init__()
        self.reading = True
        self.closed = False

    def pause_reading(self) -> None:
        self.reading = False

    def resume_reading(self) -> None:
        self.reading = True

    def close(self) -> None:
        self.closed = True


async def test_session_core_forwards_answers_in_order_and_applies_backpressure(forward, monkeypatch):
    import asyncio

    from nexus_fast.redis import connection
    from nexus_fast.redis.config import RedisPoolConfig
    from nexus_fast.redis.router import RingRouter

    monkeypatch.setattr(connection, "Pending", forward.Pending)
    monkeypatch.setattr(connection, "deliver", forward.deliver)
    router = RingRouter("p", RedisPoolConfig(servers=["127.0.0.1:1:1 a"]))
    node = router.nodes[0]
    conn = connection.ServerConnection(node, 2, redirects=False)
    conn.transport = Transport()  # type: ignore[assignment]
    node.conns[2][0] = conn
    pool = type("Pool", (), {"router": router, "bytes_in": 0})()

    class Session(forward.SessionCore):
        def __init__(self) -> None:
            forward.SessionCore.__init__(self, pool, RequestParser(), 16, True)
            self.general: list = []

        def dispatch(self, args, raw, route) -> None:  # the general path: here, answer PING like the proxy
            self.general.append(args[0])
            self.reply_now(b"+PONG\r\n")

    session = Session()
    session.transport = ClientTransport()
    session.data_received(b"GET a\r\nPING\r\nGET b\r\n")
    assert session.general == [b"PING"] and len(conn.queue) == 2 and len(session.queue) == 3
    assert pool.bytes_in == 20
    assert session.transport.written == []  # PING's answer waits behind GET a's reply: order is the client's
    await asyncio.sleep(0)
    conn.data_received(b"$1\r\nx\r\n")
    assert session.transport.written == [b"$1\r\nx\r\n+PONG\r\n"]  # both, in one write
    conn.data_received(b"$-1\r\n")
    assert session.transport.written[-1] == b"$-1\r\n" and not session.queue

    session.data_received(b"GET k\r\n" * 16)  # max_pending replies outstanding: stop reading the client
    assert not session.transport.reading and session.paused
    await asyncio.sleep(0)
    conn.data_received(b"$1\r\nv\r\n" * 8)  # down to half: read again
    assert session.transport.reading and not session.paused
    conn.data_received(b"$1\r\nv\r\n" * 8)
    assert not session.queue
    node.close()
    await node.wait_closed()


def test_flush_sessions_flushes_each(forward):
    flushed: list = []

    class Other:
        def flush(self) -> None:
            flushed.append("other")

    class Core(forward.SessionCore):
        def flush(self) -> None:  # a subclass override is honoured (cpdef dispatch)
            flushed.append("core")

    pool = type("Pool", (), {"router": None})()
    forward.flush_sessions([Other(), Core(pool, None, 16, True), Other()])
    assert flushed == ["other", "core", "other"]
