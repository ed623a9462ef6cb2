"""Pure-Python twin of ``native/forward.pyx``: the per-request steps of the forwarding path.

* ``Pending``: one request in flight: its wire bytes, its reply once known, and who wants the reply.
* ``forward_single_key(session, commands, i, single_key, lookup, nodes, proto) -> int``: sends ``commands[i:]``
  (``(args, raw)`` pairs from ``RequestParser.feed``) straight to their nodes while each is a plain single-key
  command: its name in ``single_key`` (name -> (key index, least args, most args)), its arity within bounds and
  ``nodes[lookup(key)]`` not None. Each gets a ``Pending`` appended to ``session.queue`` and goes through
  ``node.send(pending, proto)``. Returns the index of the first command it did not send (``len(commands)`` when
  it sent them all); the session routes that one the general way.
* ``SessionCore``: the hot half of a client session (``ClientSession`` in ``session.py`` subclasses it and adds
  the protocol's general path: ``dispatch``, ``queue_in_transaction``, AUTH, HELLO...). ``data_received`` parses
  and forwards; ``reply_now`` queues a reply the proxy makes itself; ``reply_ready`` marks the session for the
  router's end-of-read flush; ``flush`` writes every reply at the head of the FIFO in one write, and resumes
  reading once a paused client's backlog is down to half.
* ``flush_sessions(sessions)``: ``session.flush()`` for each (the router's end-of-read flush).
* ``deliver(conn, replies) -> bool``: matches framed replies to ``conn.queue`` in order and hands each to its
  pending's handler (``handler.reply_ready(pending)``); in cluster mode (``conn.redirects``) ``-MOVED``/``-ASK``
  go to ``conn.node.router.redirect`` first. False (after ``conn.abort``) when the node sent more replies than
  requests.
"""

from __future__ import annotations

from collections import deque
from typing import Any

from nexus_fast.redis.commands import SINGLE_KEY, TABLE, Kind
from nexus_fast.redis.protocol import encode_error

__all__ = ["Pending", "SessionCore", "deliver", "flush_sessions", "forward_single_key"]


class Pending:
    """One request in flight: its wire bytes, its reply once known, and who wants the reply."""

    __slots__ = ("attempts", "failed", "handler", "reply", "request", "sent_at")

    def __init__(self, request: bytes | None, handler: Any) -> None:
        self.request = request
        self.handler = handler
        self.reply: bytes | None = None
        self.failed = False  # the reply is the proxy's error for a node failure, not the node's answer
        self.attempts = 0
        self.sent_at = 0.0


def forward_single_key(session: Any, commands: list[tuple[list[bytes], bytes]], i: int,
                       single_key: dict[bytes, tuple[int, int, int]], lookup: Any, nodes: list[Any],
                       proto: int) -> int:
    queue = session.queue
    count = len(commands)
    while i < count:
        args, raw = commands[i]
        entry = single_key.get(args[0])
        if entry is None:
            return i
        first, least, most = entry
        if not least <= len(args) <= most:
            return i
        node = nodes[lookup(args[first])]
        if node is None:
            return i
        pending = Pending(raw, session)
        queue.append(pending)
        node.send(pending, proto)
        i += 1
    return i


def deliver(conn: Any, replies: list[bytes]) -> bool:
    queue = conn.queue
    redirects = conn.redirects
    for raw in replies:
        if not queue:
            conn.abort(f"ERR nexus-fast: node {conn.node.address} sent a reply nobody asked for")
            return False
        pending = queue.popleft()
        if redirects and raw[:1] == b"-" and (raw[:7] == b"-MOVED " or raw[:5] == b"-ASK "):
            if conn.node.router.redirect(pending, raw, conn.proto):
                continue
        pending.reply = raw
        pending.handler.reply_ready(pending)
    return True


class SessionCore:
    """The per-request half of ``ClientSession`` (see the module docstring)."""

    def __init__(self, pool: Any, parser: Any, max_pending: int, authenticated: bool) -> None:
        self.pool = pool
        self.router = pool.router
        self.parser = parser
        self.queue: deque[Pending] = deque()
        self.transport: Any = None
        self.txn: list[tuple[list[bytes], bytes]] | None = None  # MULTI..EXEC: (keys, wire bytes) per command
        self.proto = 2
        self.max_pending = max_pending
        self.dirty = False
        self.paused = False
        self.write_paused = False
        self.closing = False
        self.authenticated = authenticated

    # the general path, provided by ClientSession
    def dispatch(self, args: list[bytes], raw: bytes, route: Any) -> None:
        raise NotImplementedError

    def queue_in_transaction(self, args: list[bytes], raw: bytes) -> None:
        raise NotImplementedError

    def data_received(self, data: bytes) -> None:
        self.pool.bytes_in += len(data)
        router = self.router
        commands = self.parser.feed(data)
        count = len(commands)
        i = 0
        lookup = router.fast_lookup
        if lookup is not None and self.authenticated and self.txn is None:
            # The hot path (native/forward.pyx): plain single-key commands go straight to their node's pipelined
            # connection; the first one that is not comes back here, goes the general way, and the loop resumes.
            single_key = SINGLE_KEY
            while i < count and not self.closing:
                i = forward_single_key(self, commands, i, single_key, lookup, router.fast_nodes, self.proto)
                if i >= count or self.closing:
                    break
                args, raw = commands[i]
                i += 1
                self.dispatch(args, raw, router.route)
                # dispatch may have changed the protocol (HELLO), the login (RESET) or the topology
                if router.fast_lookup is not lookup or not self.authenticated or self.txn is not None:
                    break
        while i < count and not self.closing:
            args, raw = commands[i]
            i += 1
            if self.txn is not None:
                self.queue_in_transaction(args, raw)
                continue
            spec = TABLE.get(args[0])
            if spec is not None and spec.kind == Kind.SINGLE and self.authenticated and spec.arity_ok(len(args)):
                router.single(self, spec, args, raw, args[spec.first])
            else:
                self.dispatch(args, raw, router.route)
        if self.parser.error is not None and not self.closing:
            self.reply_now(encode_error(f"ERR Protocol error: {self.parser.error}"))
            self.closing = True
        if not self.paused and len(self.queue) >= self.max_pending and self.transport is not None:
            self.paused = True
            self.transport.pause_reading()
        if router.dirty:
            router.flush_dirty()


    def reply_now(self, reply: bytes) -> None:
        pending = Pending(None, self)
        pending.reply = reply
        self.queue.append(pending)
        if not self.dirty:
            self.dirty = True
            self.router.dirty.append(self)

    def reply_ready(self, pending: Pending) -> None:
        if not self.dirty:
            self.dirty = True
            self.router.dirty.append(self)

    def flush(self) -> None:
        self.dirty = False
        queue = self.queue
        if not queue or queue[0].reply is None:
            return
        data = queue.popleft().reply
        if queue and queue[0].reply is not None:
            out = [data]
            while queue and queue[0].reply is not None:
                out.append(queue.popleft().reply)
            data = b"".join(out)  # type: ignore[arg-type]
        transport = self.transport
        if transport is None:
            queue.clear()
            return
        transport.write(data)  # type: ignore[arg-type]
        if self.paused and len(queue) <= self.max_pending // 2:
            self.paused = False
            if not self.write_paused:
                transport.resume_reading()
        if self.closing and not queue:
            transport.close()


def flush_sessions(sessions: list[Any]) -> None:
    for session in sessions:
        session.flush()
