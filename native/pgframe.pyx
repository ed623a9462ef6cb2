# cython: language_level=3
"""PostgreSQL protocol v3 message framing (compiled twin of nexus_fast/postgres/_pgframe_py.py).

Every v3 message after startup is ``type:byte, length:int32 (big-endian, includes itself), body``
(https://www.postgresql.org/docs/current/protocol-overview.html#PROTOCOL-MESSAGE-CONCEPTS). The proxy forwards
whole buffers and only needs message boundaries, counts of ReadyForQuery / Sync, the last transaction status and a
summary of which message types occurred, so these scans touch only the 5-byte headers.
"""

from cpython.bytes cimport PyBytes_AS_STRING
from cpython.buffer cimport PyObject_GetBuffer, PyBuffer_Release, PyBUF_SIMPLE

MAX_MESSAGE = 0x40000000  # 1 GiB: PostgreSQL's own MaxAllocSize bound on a message

# server message flags
S_ERROR = 1
S_PARAMETER_STATUS = 2
S_NOTIFICATION = 4
S_COPY_IN = 8
S_COPY_OUT = 16
S_PARSE_COMPLETE = 32
S_CLOSE_COMPLETE = 64
S_COPY_BOTH = 128
S_NOTICE = 256
S_OTHER_CONTROL = 512  # 'R' authentication or 'K' backend key data after login: unexpected

# client message flags
C_PARSE = 1
C_BIND = 2
C_DESCRIBE = 4
C_CLOSE = 8
C_QUERY = 16
C_SYNC = 32
C_TERMINATE = 64
C_FUNCTION = 128
C_COPY = 256  # CopyData / CopyDone / CopyFail
C_FLUSH = 512
C_EXECUTE = 1024
C_UNKNOWN = 2048


cdef inline unsigned int _len_at(const unsigned char* p) noexcept nogil:
    return (<unsigned int>p[0] << 24) | (<unsigned int>p[1] << 16) | (<unsigned int>p[2] << 8) | <unsigned int>p[3]


def scan_server(object buf, Py_ssize_t start=0):
    """Scan complete server messages from ``start``: (end, ready_count, last_status, flags).

    ``end`` is the offset after the last complete message; ``ready_count`` counts ReadyForQuery messages;
    ``last_status`` is the transaction status byte of the last one (0 if none); ``flags`` the S_* summary.
    Raises ValueError on an impossible length.
    """
    cdef Py_buffer view
    cdef const unsigned char* p
    cdef Py_ssize_t n, pos = start, end = start
    cdef unsigned int mlen
    cdef unsigned char t
    cdef int ready = 0, status = 0, flags = 0
    PyObject_GetBuffer(buf, &view, PyBUF_SIMPLE)
    try:
        p = <const unsigned char*>view.buf
        n = view.len
        while pos + 5 <= n:
            t = p[pos]
            mlen = _len_at(p + pos + 1)
            if mlen < 4 or mlen > MAX_MESSAGE:
                raise ValueError("invalid message length %d for type %r" % (mlen, chr(t)))
            if pos + 1 + <Py_ssize_t>mlen > n:
                break
            if t == 90:  # 'Z' ReadyForQuery: body is one status byte
                ready += 1
                if mlen >= 5:
                    status = p[pos + 5]
            elif t == 69:  # 'E'
                flags |= S_ERROR
            elif t == 83:  # 'S'
                flags |= S_PARAMETER_STATUS
            elif t == 65:  # 'A'
                flags |= S_NOTIFICATION
            elif t == 71:  # 'G'
                flags |= S_COPY_IN
            elif t == 72:  # 'H'
                flags |= S_COPY_OUT
            elif t == 49:  # '1'
                flags |= S_PARSE_COMPLETE
            elif t == 51:  # '3'
                flags |= S_CLOSE_COMPLETE
            elif t == 87:  # 'W'
                flags |= S_COPY_BOTH
            elif t == 78:  # 'N'
                flags |= S_NOTICE
            elif t == 82 or t == 75:
                flags |= S_OTHER_CONTROL
            pos += 1 + mlen
            end = pos
    finally:
        PyBuffer_Release(&view)
    return end, ready, status, flags


def scan_client(object buf, Py_ssize_t start=0):
    """Scan complete client messages from ``start``: (end, sync_count, flags, last_type).

    ``sync_count`` counts messages the server answers with ReadyForQuery (Query and Sync; FunctionCall too);
    ``last_type`` is the type byte of the last complete message (0 if none): a batch not ending in Sync/Query
    leaves the server inside an unfinished extended-protocol exchange.
    """
    cdef Py_buffer view
    cdef const unsigned char* p
    cdef Py_ssize_t n, pos = start, end = start
    cdef unsigned int mlen
    cdef unsigned char t
    cdef int syncs = 0, flags = 0, last = 0
    PyObject_GetBuffer(buf, &view, PyBUF_SIMPLE)
    try:
        p = <const unsigned char*>view.buf
        n = view.len
        while pos + 5 <= n:
            t = p[pos]
            mlen = _len_at(p + pos + 1)
            if mlen < 4 or mlen > MAX_MESSAGE:
                raise ValueError("invalid message length %d for type %r" % (mlen, chr(t)))
            if pos + 1 + <Py_ssize_t>mlen > n:
                break
            if t == 80:
                flags |= C_PARSE
            elif t == 66:
                flags |= C_BIND
            elif t == 69:
                flags |= C_EXECUTE
            elif t == 83:
                flags |= C_SYNC
                syncs += 1
            elif t == 81:
                flags |= C_QUERY
                syncs += 1
            elif t == 68:
                flags |= C_DESCRIBE
            elif t == 67:
                flags |= C_CLOSE
            elif t == 88:
                flags |= C_TERMINATE
            elif t == 70:
                flags |= C_FUNCTION
                syncs += 1
            elif t == 100 or t == 99 or t == 102:
                flags |= C_COPY
            elif t == 72:
                flags |= C_FLUSH
            else:
                flags |= C_UNKNOWN
            last = t
            pos += 1 + mlen
            end = pos
    finally:
        PyBuffer_Release(&view)
    return end, syncs, flags, last


def split_messages(object buf, Py_ssize_t start=0):
    """Complete messages from ``start`` as a list of (type, offset, end), and the offset after the last one."""
    cdef Py_buffer view
    cdef const unsigned char* p
    cdef Py_ssize_t n, pos = start
    cdef unsigned int mlen
    cdef list out = []
    PyObject_GetBuffer(buf, &view, PyBUF_SIMPLE)
    try:
        p = <const unsigned char*>view.buf
        n = view.len
        while pos + 5 <= n:
            mlen = _len_at(p + pos + 1)
            if mlen < 4 or mlen > MAX_MESSAGE:
                raise ValueError("invalid message length %d for type %r" % (mlen, chr(p[pos])))
            if pos + 1 + <Py_ssize_t>mlen > n:
                break
            out.append((p[pos], pos, pos + 1 + mlen))
            pos += 1 + mlen
    finally:
        PyBuffer_Release(&view)
    return out, pos
