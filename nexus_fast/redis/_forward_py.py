"""Pure-Python twin of ``native/forward.pyx``: the per-request steps of the forwarding path.

* ``Pending``: one request in flight: its wire bytes, its reply once known, and who wants the reply.
* ``forward_single_key(session, commands, i, single_key, lookup, nodes, proto) -> int``: sends ``commands[i:]``
  (``(args, raw)`` pairs from ``RequestParser.feed``) straight to their nodes while each is a plain single-key
  command: its name in ``single_key`` (name -> (key index, least args, most args)), its arity within bounds and
  ``nodes[lookup(key)]`` not None. Each gets a ``Pending`` appended to ``session.queue`` and goes through
  ``node.send(pending, proto)``. Returns the index of the first command it did not send (``len(commands)`` when
  it sent them all); the session routes that one the general way.
* ``deliver(conn, replies) -> bool``: matches framed replies to ``conn.queue`` in order and hands each to its
  pending's handler (``handler.reply_ready(pending)``); in cluster mode (``conn.redirects``) ``-MOVED``/``-ASK``
  go to ``conn.node.router.redirect`` first. False (after ``conn.abort``) when the node sent more replies than
  requests.
"""

from __future__ import annotations

from typing import Any

__all__ = ["Pending", "deliver", "forward_single_key"]


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
            if conn.node.router.redirect(pending, raw):
                continue
        pending.reply = raw
        pending.handler.reply_ready(pending)
    return True
