# cython: language_level=3
"""Compiled twin of ``nexus_fast/redis/_forward_py.py``: the per-request steps of the forwarding path (read that
module's docstring for the contract). ``Pending`` is an extension type with a free list, so a request in flight
costs no dict and no general allocation; the loops index lists and tuples directly."""

cimport cython
from cpython.dict cimport PyDict_GetItem
from cpython.object cimport PyObject

__all__ = ["Pending", "deliver", "forward_single_key"]


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
    """``node.send(pending, proto)`` for the common case, without two Python frames: the node's first connection
    for ``proto`` is open, so the request joins its FIFO and its next coalesced write exactly as
    ``ServerConnection.send`` does; anything else (no connection yet, a closed one) goes through ``node.send``."""
    cdef object conn = node.conns[proto][0]
    if conn is None or conn.closed:
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
            if conn.node.router.redirect(pending, raw):
                continue
        pending.reply = raw
        pending.handler.reply_ready(pending)
    return True
