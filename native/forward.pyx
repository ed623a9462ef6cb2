# cython: language_level=3
"""Compiled twin of ``nexus_fast/redis/_forward_py.py``: the per-request steps of the forwarding path (read that
module's docstring for the contract). ``Pending`` is an extension type with a free list, so a request in flight
costs no dict and no general allocation; the loops index lists and tuples directly."""

cimport cython
from cpython.dict cimport PyDict_GetItem
from cpython.object cimport PyObject

from collections import deque

from nexus_fast.redis.commands import SINGLE_KEY, TABLE, Kind
from nexus_fast.redis.protocol import encode_error

__all__ = ["Pending", "SessionCore", "deliver", "flush_sessions", "forward_single_key"]

cdef object KIND_SINGLE = Kind.SINGLE


@cython.freelist(4096)
cdef class Pending:
    """One request in flight: its wire bytes, its reply once known, and who wants the reply."""

    cdef public object request
    cdef public object handler
    cdef public object reply
    cdef public bint failed
    cdef public int attempts
    cdef public double sent_at

    def __init__(self, request, handler):
        self.request = request
        self.handler = handler
        self.reply = None
        self.failed = False
        self.attempts = 0
        self.sent_at = 0.0


def forward_single_key(object session, list commands, Py_ssize_t i, dict single_key, object lookup, list nodes,
                       object proto):
    return _forward_single_key(session, commands, i, single_key, lookup, nodes, proto)


cdef Py_ssize_t _forward_single_key(object session, list commands, Py_ssize_t i, dict single_key, object lookup,
                                    list nodes, object proto) except -1:
    cdef object queue = session.queue
    cdef Py_ssize_t count = len(commands)
    cdef Py_ssize_t nargs, first, index
    cdef tuple item, entry
    cdef list args
    cdef PyObject *found
    cdef object node
    cdef Pending pending
    while i < count:
        item = <tuple>commands[i]
        args = <list>item[0]
        found = PyDict_GetItem(single_key, args[0])
        if found == NULL:
            return i
        entry = <tuple>found
        nargs = len(args)
        if nargs < <Py_ssize_t>entry[1] or nargs > <Py_ssize_t>entry[2]:
            return i
        first = <Py_ssize_t>entry[0]
        index = lookup(args[first])
        if index < 0:
            index += len(nodes)
        node = nodes[index]
        if node is None:
            return i
        pending = Pending.__new__(Pending)
        pending.request = item[1]
        pending.handler = session
        queue.append(pending)
        _send(node, pending, proto)
        i += 1
    return i


cdef inline void _send(object node, Pending pending, object proto) except *:
    """``node.send(pending, proto)`` for the common case, without two Python frames: the node has one connection
    for ``proto`` and it is open, so the request joins its FIFO and its next coalesced write exactly as
    ``ServerConnection.send`` does; anything else (no connection yet, a closed one) goes through ``node.send``."""
    cdef list conns = node.conns[proto]
    cdef object conn = conns[0]
    if conn is None or conn.closed or len(conns) != 1:  # several connections: Node.send picks the client's
        node.send(pending, proto)
        return
    node.requests += 1
    cdef object cq = conn.queue
    if not cq:
        conn.last_progress = conn._loop.time()
    cq.append(pending)
    conn.out.append(pending.request)
    if not conn.flush_scheduled and conn.transport is not None:
        conn.flush_scheduled = True
        conn._loop.call_soon(conn._flush)


def deliver(object conn, list replies):
    cdef object queue = conn.queue
    cdef bint redirects = conn.redirects
    cdef bytes raw
    cdef Pending pending
    for raw in replies:
        if not queue:
            conn.abort(f"ERR nexus-fast: node {conn.node.address} sent a reply nobody asked for")
            return False
        pending = <Pending?>queue.popleft()
        if redirects and raw[:1] == b"-" and (raw[:7] == b"-MOVED " or raw[:5] == b"-ASK "):
            if conn.node.router.redirect(pending, raw, conn.proto):
                continue
        pending.reply = raw
        handler = pending.handler
        if isinstance(handler, SessionCore):
            (<SessionCore>handler).reply_ready(pending)
        else:
            handler.reply_ready(pending)
    return True


cdef class SessionCore:
    """The per-request half of ``ClientSession`` (see the pure twin's docstring)."""

    cdef public object pool
    cdef public object router
    cdef public object parser
    cdef public object queue
    cdef public object transport
    cdef public object txn
    cdef public object proto
    cdef public Py_ssize_t max_pending
    cdef public bint dirty
    cdef public bint paused
    cdef public bint write_paused
    cdef public bint closing
    cdef public bint authenticated
    cdef dict __dict__  # ClientSession's own attributes (name, id, ...)

    def __init__(self, pool, parser, Py_ssize_t max_pending, bint authenticated):
        self.pool = pool
        self.router = pool.router
        self.parser = parser
        self.queue = deque()
        self.transport = None
        self.txn = None
        self.proto = 2
        self.max_pending = max_pending
        self.dirty = False
        self.paused = False
        self.write_paused = False
        self.closing = False
        self.authenticated = authenticated

    def data_received(self, bytes data):
        self.pool.bytes_in += len(data)
        cdef object router = self.router
        cdef list commands = self.parser.feed(data)
        cdef Py_ssize_t count = len(commands), i = 0
        cdef object lookup = router.fast_lookup
        cdef list args
        cdef object raw, spec
        if lookup is not None and self.authenticated and self.txn is None:
            while i < count and not self.closing:
                i = _forward_single_key(self, commands, i, SINGLE_KEY, lookup, router.fast_nodes, self.proto)
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
            if spec is not None and spec.kind == KIND_SINGLE and self.authenticated and spec.arity_ok(len(args)):
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

    cpdef reply_now(self, bytes reply):
        cdef Pending pending = Pending.__new__(Pending)
        pending.handler = self
        pending.reply = reply
        self.queue.append(pending)
        if not self.dirty:
            self.dirty = True
            self.router.dirty.append(self)

    cpdef reply_ready(self, pending):
        if not self.dirty:
            self.dirty = True
            self.router.dirty.append(self)

    cpdef flush(self):
        self.dirty = False
        cdef object queue = self.queue
        cdef list out
        if not queue or (<Pending?>queue[0]).reply is None:
            return
        data = (<Pending?>queue.popleft()).reply
        if queue and (<Pending?>queue[0]).reply is not None:
            out = [data]
            while queue and (<Pending?>queue[0]).reply is not None:
                out.append((<Pending?>queue.popleft()).reply)
            data = b"".join(out)
        transport = self.transport
        if transport is None:
            queue.clear()
            return
        transport.write(data)
        if self.paused and len(queue) <= self.max_pending // 2:
            self.paused = False
            if not self.write_paused:
                transport.resume_reading()
        if self.closing and not queue:
            transport.close()


def flush_sessions(list sessions):
    cdef object session
    for session in sessions:
        if isinstance(session, SessionCore):
            (<SessionCore>session).flush()
        else:
            session.flush()
