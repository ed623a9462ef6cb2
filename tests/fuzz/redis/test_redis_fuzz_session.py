"""Arbitrary pipelines, split anywhere, through a real ClientSession (compiled or pure SessionCore, whichever the
build loaded) and real nodes' ServerConnections with recording transports: every command gets exactly one reply,
in order, whatever the mix of fast-path, general-path, proxy-answered, transaction and malformed commands."""

from __future__ import annotations

import asyncio

from hypothesis import given, settings
from hypothesis import strategies as st

from nexus_fast.observe.metrics import Metrics
from nexus_fast.redis.config import RedisPoolConfig
from nexus_fast.redis.connection import ServerConnection
from nexus_fast.redis.metrics import RedisMetrics
from nexus_fast.redis.plane import RedisPool
from nexus_fast.redis.protocol import ReplyScanner, encode_command
from nexus_fast.redis.session import ClientSession

COMMANDS = [
    [b"GET", b"k1"], [b"get", b"k2"], [b"SET", b"k3", b"v"], [b"INCR", b"{t}a"], [b"MGET", b"k1", b"k2", b"k3"],
    [b"DEL", b"k1", b"k9"], [b"PING"], [b"ECHO", b"hi"], [b"GET"], [b"NOSUCH"], [b"BLPOP", b"q", b"0"],
    [b"MULTI"], [b"EXEC"], [b"DISCARD"], [b"HELLO", b"3"], [b"HELLO", b"2"], [b"RENAME", b"{t}a", b"{t}b"],
    [b"CLIENT", b"SETNAME", b"x"], [b"SELECT", b"0"], [b"EVAL", b"return 1", b"0"],
]


class Transport:
    def __init__(self) -> None:
        self.written: list[bytes] = []
        self.reading = True

    def write(self, data: bytes) -> None:
        self.written.append(data)

    def pause_reading(self) -> None:
        self.reading = False

    def resume_reading(self) -> None:
        self.reading = True

    def close(self) -> None:
        pass

    def is_closing(self) -> bool:
        return False


async def run(stream: bytes, cut: int) -> tuple[int, int]:
    pool = RedisPool("p", RedisPoolConfig(servers=["127.0.0.1:1:1 a", "127.0.0.1:2:1 b"], hash="murmur"),
                     RedisMetrics(Metrics()))
    for node in pool.router.nodes:
        for proto in (2, 3):
            conn = ServerConnection(node, proto, redirects=False)
            conn.transport = Transport()  # type: ignore[assignment]
            node.conns[proto][0] = conn
    session = ClientSession(pool)
    client = Transport()
    session.connection_made(client)  # type: ignore[arg-type]
    for i in range(0, len(stream), cut):
        session.data_received(stream[i:i + cut])
        await asyncio.sleep(0)  # coalesced writes to the nodes
        for node in pool.router.nodes:  # each node answers everything it was sent
            for conns in node.conns.values():
                conn = conns[0]
                if conn is not None and conn.queue:
                    conn.data_received(b"+OK\r\n" * len(conn.queue))
    scanner = ReplyScanner()
    replies = scanner.feed(b"".join(client.written))
    assert scanner.error is None and scanner.pending() == 0  # only whole replies reached the client
    for node in pool.router.nodes:
        node.close()
    return len(replies), len(session.queue)


@settings(max_examples=150, deadline=None)
@given(picks=st.lists(st.integers(min_value=0, max_value=len(COMMANDS) - 1), min_size=1, max_size=30),
       cut=st.integers(min_value=1, max_value=64))
def test_every_command_answered_once_in_order(picks, cut):
    stream = b"".join(encode_command(COMMANDS[i]) for i in picks)
    replies, left = asyncio.run(run(stream, cut))
    assert (replies, left) == (len(picks), 0)


@settings(max_examples=100, deadline=None)
@given(prefix=st.lists(st.integers(min_value=0, max_value=len(COMMANDS) - 1), max_size=10),
       garbage=st.binary(min_size=1, max_size=64), cut=st.integers(min_value=1, max_value=64))
def test_garbage_after_commands_never_crashes(prefix, garbage, cut):
    stream = b"".join(encode_command(COMMANDS[i]) for i in prefix) + garbage
    replies, left = asyncio.run(run(stream, cut))
    assert replies >= len(prefix) and left == 0  # the commands before it answered, then perhaps an error
