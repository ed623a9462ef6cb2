"""Server side of the forwarding path: one pipelined connection to a Redis node.

Many clients' requests share a connection. Redis answers a connection's commands strictly in order (RESP spec,
"Pipelining"), so a FIFO of ``Pending`` requests is matched against the replies as they are framed. Writes are
coalesced: requests queued during one event-loop turn go out in one ``write`` (``call_soon`` flush), which is
where most of twemproxy's advantage over naive proxies comes from. Replies are forwarded as the bytes the node
sent; nothing is re-encoded.

A reply is delivered by setting ``pending.reply`` and calling ``pending.handler.reply_ready(pending)``; the
handler is the client session, or a merge/fan-out/fallback helper for split and replicated commands.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from typing import TYPE_CHECKING

from nexus_fast import _extensions
from nexus_fast.redis.protocol import ReplyScanner, encode_error

if TYPE_CHECKING:
    from nexus_fast.redis.pool import Node


# Latency clock: uvloop's loop.time() is libuv's cached millisecond clock, too coarse for sub-millisecond replies.
_clock = time.perf_counter


# ``Pending`` (one request in flight), the session's per-request half and the reply-matching loop are native (``native/forward.pyx``) when compiled,
# else the pure twin ``nexus_fast.redis._forward_py``.
if TYPE_CHECKING:
    from nexus_fast.redis._forward_py import Pending, SessionCore, deliver, flush_sessions, forward_single_key
else:
    _forward = _extensions.load("forward")
    Pending = _forward.Pending
    SessionCore = _forward.SessionCore
    deliver = _forward.deliver
    flush_sessions = _forward.flush_sessions
    forward_single_key = _forward.forward_single_key


class Discard:
    """Handler for the proxy's own requests whose replies nobody waits for (ASKING, setup commands)."""

    __slots__ = ("node", "what")

    def __init__(self, node: Node | None = None, what: str = "") -> None:
        self.node = node
        self.what = what

    def reply_ready(self, pending: Pending) -> None:
        reply = pending.reply or b""
        if reply[:1] == b"-" and self.node is not None and not pending.failed:
            self.node.setup_failed(self.what, reply[1:-2].decode(errors="replace"))


class ServerConnection(asyncio.Protocol):
    """Latency is measured per write, not per request (a clock read per request would cost more than the
    forwarding): each coalesced write is remembered as (requests written so far, its size, when), and when the
    replies read reach its end, its requests are observed at ``now - when`` in the node's histogram, one weighted
    observation per batch."""

    __slots__ = ("_loop", "answered", "batches", "closed", "errors_seen", "flush_scheduled", "last_progress", "node",
                 "out", "proto", "pushes_seen", "queue", "redirects", "scanner", "transport", "written")

    def __init__(self, node: Node, proto: int, redirects: bool) -> None:
        self.node = node
        self.proto = proto
        self.redirects = redirects  # cluster mode: -MOVED/-ASK replies go back to the router
        self._loop = asyncio.get_running_loop()
        self.queue: deque[Pending] = deque()
        self.out: list[bytes] = []
        self.transport: asyncio.Transport | None = None
        self.scanner = ReplyScanner()
        self.closed = False
        self.flush_scheduled = False
        self.last_progress = 0.0
        self.written = 0  # requests written on this connection
        self.answered = 0  # replies read on it
        self.batches: deque[tuple[int, int, float]] = deque()  # (written after the write, its size, its time)
        self.errors_seen = 0
        self.pushes_seen = 0

    # -- requests out
    # native/forward.pyx ``_send`` repeats this method (and Node.send) for the hot path: keep them in step.
    def send(self, pending: Pending) -> None:
        if self.closed:
            self._fail(pending, f"ERR nexus-fast: connection to {self.node.address} is closed")
            self.node.router.flush_dirty()
            return
        queue = self.queue
        if not queue:
            self.last_progress = self._loop.time()
        queue.append(pending)
        self.out.append(pending.request)  # type: ignore[arg-type]
        if not self.flush_scheduled and self.transport is not None:
            self.flush_scheduled = True
            self._loop.call_soon(self._flush)

    def _flush(self) -> None:
        self.flush_scheduled = False
        out = self.out
        if not out or self.transport is None or self.closed:
            return
        self.out = []
        data = out[0] if len(out) == 1 else b"".join(out)
        self.transport.write(data)
        count = len(out)
        self.written += count
        self.batches.append((self.written, count, _clock()))
        self.node.bytes_out += len(data)

    # -- asyncio.Protocol
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        if self.closed:
            transport.close()
            return
        self.last_progress = self._loop.time()
        self._flush()

    def data_received(self, data: bytes) -> None:
        node = self.node
        node.bytes_in += len(data)
        scanner = self.scanner
        replies = scanner.feed(data)
        if scanner.error is not None:
            self.abort(f"ERR nexus-fast: node {node.address} sent an invalid reply ({scanner.error})")
            return
        if not replies:
            return
        if node.failures:
            node.record_success()
        self.last_progress = self._loop.time()
        if scanner.errors != self.errors_seen:
            node.error_replies += scanner.errors - self.errors_seen
            self.errors_seen = scanner.errors
        if scanner.pushes != self.pushes_seen:
            # RESP3 pushes (tracking invalidations) travel between replies and answer no request
            self.pushes_seen = scanner.pushes
            pushes = [r for r in replies if r[:1] == b">"]
            replies = [r for r in replies if r[:1] != b">"]
            for raw in pushes:
                node.router.push(raw)
            if not replies:
                node.router.flush_dirty()
                return
        self.answered += len(replies)
        batches = self.batches
        if batches and batches[0][0] <= self.answered:
            latency = node.latency
            now = _clock()
            while batches and batches[0][0] <= self.answered:
                _, count, when = batches.popleft()
                latency.observe(now - when, count)
        if not deliver(self, replies):
            return
        node.replies += len(replies)
        node.router.flush_dirty()

    def connection_lost(self, exc: Exception | None) -> None:
        was_closed = self.closed
        self.closed = True
        self.transport = None
        if self.queue or self.out:
            reason = f"connection to {self.node.address} lost" + (f" ({exc})" if exc else "")
            self._fail_all(f"ERR nexus-fast: {reason}")
            if not was_closed:
                self.node.record_failure(reason)
        self.node.forget(self)
        self.node.router.flush_dirty()

    def pause_writing(self) -> None:  # the node is slow to read: nothing to do but let the buffer grow
        pass

    def resume_writing(self) -> None:
        pass

    # -- failure paths
    def _fail(self, pending: Pending, message: str) -> None:
        pending.failed = True
        pending.reply = encode_error(message)
        pending.handler.reply_ready(pending)

    def _fail_all(self, message: str) -> None:
        queue, self.queue = self.queue, deque()
        self.out = []
        for pending in queue:
            self._fail(pending, message)

    def abort(self, message: str, count_failure: bool = True) -> None:
        """Fail every request in flight with ``message`` and drop the connection (a timeout or a broken node)."""
        if self.closed:
            return
        self.closed = True
        self._fail_all(message)
        if self.transport is not None:
            self.transport.abort()
        if count_failure:
            self.node.record_failure(message)
        self.node.forget(self)
        self.node.router.flush_dirty()

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        self._fail_all(f"ERR nexus-fast: connection to {self.node.address} closed by the proxy")
        if self.transport is not None:
            self.transport.close()
        self.node.forget(self)
