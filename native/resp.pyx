# cython: language_level=3
"""Compiled twin of ``nexus_fast/redis/_resp_py.py``: sans-IO RESP request parser and reply framer.

Same contract as the pure module (read its docstring): ``RequestParser.feed(data) -> [(args, raw), ...]`` and
``ReplyScanner.feed(data) -> [raw, ...]``, resumable across reads, ``error`` set on malformed input. The common
case (whole commands in one read) parses straight out of the received ``bytes`` with no intermediate copy; only
an incomplete tail is kept for the next read.
"""

from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_FromStringAndSize, PyBytes_GET_SIZE
from libc.string cimport memchr

from nexus_fast.redis._resp_py import _split_inline, encode_command

__all__ = ["MAX_BULK_LENGTH", "MAX_INLINE_LENGTH", "MAX_MULTIBULK_LENGTH", "MAX_NESTING", "ReplyScanner",
           "RequestParser", "encode_command"]

MAX_BULK_LENGTH = 512 * 1024 * 1024
MAX_MULTIBULK_LENGTH = 1024 * 1024
MAX_INLINE_LENGTH = 64 * 1024
MAX_NESTING = 128

DEF C_MAX_NESTING = 128


cdef inline Py_ssize_t _find_crlf(const char *p, Py_ssize_t start, Py_ssize_t n) noexcept nogil:
    cdef const char *q
    while start < n:
        q = <const char *>memchr(p + start, b'\r', n - start)
        if q == NULL:
            return -1
        start = q - p
        if start + 1 >= n:
            return -1
        if p[start + 1] == b'\n':
            return start
        start += 1
    return -1


cdef inline bint _parse_int(const char *p, Py_ssize_t start, Py_ssize_t end, long long *out) noexcept nogil:
    cdef long long value = 0
    cdef bint negative = False
    if start >= end or end - start > 19:
        return False
    if p[start] == b'-':
        negative = True
        start += 1
        if start >= end:
            return False
    while start < end:
        if p[start] < b'0' or p[start] > b'9':
            return False
        value = value * 10 + (<long long>p[start] - 48)
        start += 1
    out[0] = -value if negative else value
    return True


cdef class RequestParser:
    """Incremental parser of client commands (see the pure twin for the contract)."""

    cdef public object error
    cdef bytes _buf
    cdef list _args
    cdef Py_ssize_t _remaining
    cdef bint _spanned
    cdef readonly long long max_bulk
    cdef readonly long long max_args
    cdef readonly Py_ssize_t max_inline

    def __init__(self, long long max_bulk=MAX_BULK_LENGTH, long long max_args=MAX_MULTIBULK_LENGTH,
                 Py_ssize_t max_inline=MAX_INLINE_LENGTH):
        self.max_bulk = max_bulk
        self.max_args = max_args
        self.max_inline = max_inline
        self.error = None
        self._buf = b""
        self._args = []
        self._remaining = 0
        self._spanned = False

    def pending(self):
        return PyBytes_GET_SIZE(self._buf)

    cpdef list feed(self, bytes data):
        if self.error is not None:
            return []
        cdef bytes buf
        if PyBytes_GET_SIZE(self._buf):
            buf = self._buf + data
        else:
            buf = data
        cdef const char *p = PyBytes_AS_STRING(buf)
        cdef Py_ssize_t n = PyBytes_GET_SIZE(buf)
        cdef Py_ssize_t pos = 0, cmd_start = 0, eol, end, nl
        cdef long long count, length
        cdef list out = []
        cdef list args = self._args
        cdef Py_ssize_t remaining = self._remaining
        cdef const char *q
        while pos < n:
            if remaining == 0:
                cmd_start = pos
                if p[pos] == b'*':
                    eol = _find_crlf(p, pos + 1, n)
                    if eol < 0:
                        if n - pos > self.max_inline:
                            return self._fail(out, "too big mbulk count string")
                        break
                    if not _parse_int(p, pos + 1, eol, &count) or count > self.max_args:
                        return self._fail(out, "invalid multibulk length")
                    pos = eol + 2
                    if count <= 0:
                        continue
                    args = []
                    remaining = count
                    self._spanned = False
                else:
                    q = <const char *>memchr(p + pos, b'\n', n - pos)
                    if q == NULL:
                        if n - pos > self.max_inline:
                            return self._fail(out, "too big inline request")
                        break
                    nl = q - p
                    words = _split_inline(PyBytes_FromStringAndSize(p + pos, nl - pos))
                    pos = nl + 1
                    if words is None:
                        return self._fail(out, "unbalanced quotes in request")
                    if words:
                        out.append((words, encode_command(words)))
                    continue
            while remaining > 0:
                if pos >= n:
                    break
                if p[pos] != b'$':
                    return self._fail(out, f"expected '$', got '{chr(<unsigned char>p[pos])}'")
                eol = _find_crlf(p, pos + 1, n)
                if eol < 0:
                    if n - pos > 32:
                        return self._fail(out, "too big bulk count string")
                    break
                if not _parse_int(p, pos + 1, eol, &length) or length < 0 or length > self.max_bulk:
                    return self._fail(out, "invalid bulk length")
                end = eol + 2 + length
                if end + 2 > n:
                    break
                if p[end] != b'\r' or p[end + 1] != b'\n':
                    return self._fail(out, "bulk string not terminated by CRLF")
                args.append(PyBytes_FromStringAndSize(p + eol + 2, length))
                pos = end + 2
                remaining -= 1
            if remaining > 0:
                break
            if self._spanned:
                out.append((args, encode_command(args)))
            else:
                out.append((args, PyBytes_FromStringAndSize(p + cmd_start, pos - cmd_start)))
            self._spanned = False
            args = []
        if remaining > 0:
            self._spanned = True
        if pos >= n:
            self._buf = b""
        else:
            self._buf = PyBytes_FromStringAndSize(p + pos, n - pos)
        self._args = args
        self._remaining = remaining
        return out

    cdef list _fail(self, list out, str message):
        self.error = message
        self._buf = b""
        self._args = []
        self._remaining = 0
        return out


cdef class ReplyScanner:
    """Incremental framer of server replies (see the pure twin for the contract)."""

    cdef public object error
    cdef bytes _buf
    cdef Py_ssize_t _pos
    cdef long long _stack[C_MAX_NESTING]
    cdef int _depth
    cdef readonly long long max_bulk
    cdef public long long errors
    cdef public long long pushes

    def __init__(self, long long max_bulk=MAX_BULK_LENGTH):
        self.max_bulk = max_bulk
        self.errors = 0
        self.pushes = 0
        self.error = None
        self._buf = b""
        self._pos = 0
        self._depth = 0

    def pending(self):
        return PyBytes_GET_SIZE(self._buf)

    cpdef list feed(self, bytes data):
        if self.error is not None:
            return []
        cdef bytes buf
        if PyBytes_GET_SIZE(self._buf):
            buf = self._buf + data
        else:
            buf = data
        cdef const char *p = PyBytes_AS_STRING(buf)
        cdef Py_ssize_t n = PyBytes_GET_SIZE(buf)
        cdef Py_ssize_t start = 0, pos = self._pos, eol, nxt, end
        cdef long long count, length
        cdef char kind
        cdef list out = []
        while pos < n:
            kind = p[pos]
            eol = _find_crlf(p, pos + 1, n)
            if eol < 0:
                if n - pos > MAX_INLINE_LENGTH * 16:
                    return self._fail(out, "reply line too long")
                break
            if kind == b'+' or kind == b'-' or kind == b':' or kind == b'_' or kind == b',' or kind == b'#' \
                    or kind == b'(':
                nxt = eol + 2
            elif kind == b'$' or kind == b'=' or kind == b'!':
                if not _parse_int(p, pos + 1, eol, &length) or length < -1 or length > self.max_bulk:
                    return self._fail(out, "invalid bulk length in reply")
                if length == -1:
                    nxt = eol + 2
                else:
                    end = eol + 2 + length
                    if end + 2 > n:
                        break
                    if p[end] != b'\r' or p[end + 1] != b'\n':
                        return self._fail(out, "bulk reply not terminated by CRLF")
                    nxt = end + 2
            elif kind == b'*' or kind == b'~' or kind == b'>' or kind == b'%' or kind == b'|':
                if not _parse_int(p, pos + 1, eol, &count) or count < -1 or count > MAX_MULTIBULK_LENGTH * 64:
                    return self._fail(out, "invalid aggregate length in reply")
                if kind == b'%':
                    count *= 2
                elif kind == b'|':
                    count = count * 2 + 1
                if count > 0:
                    if self._depth >= C_MAX_NESTING:
                        return self._fail(out, "reply nested too deeply")
                    self._stack[self._depth] = count
                    self._depth += 1
                    pos = eol + 2
                    continue
                nxt = eol + 2
            else:
                return self._fail(out, f"unknown reply type byte {bytes([<unsigned char>kind])!r}")
            pos = nxt
            while self._depth > 0:
                self._stack[self._depth - 1] -= 1
                if self._stack[self._depth - 1]:
                    break
                self._depth -= 1
            if self._depth == 0:
                if p[start] == b'-' or p[start] == b'!':
                    self.errors += 1
                elif p[start] == b'>':
                    self.pushes += 1
                out.append(PyBytes_FromStringAndSize(p + start, pos - start))
                start = pos
        if start >= n:
            self._buf = b""
        else:
            self._buf = PyBytes_FromStringAndSize(p + start, n - start)
        self._pos = pos - start
        return out

    cdef list _fail(self, list out, str message):
        self.error = message
        self._buf = b""
        self._pos = 0
        self._depth = 0
        return out
