"""Pure-Python twin of ``native/pgframe.pyx``: PostgreSQL v3 message framing (see that file for the contract).

Every v3 message after startup is ``type:byte, length:int32 (big-endian, includes itself), body``
(https://www.postgresql.org/docs/current/protocol-overview.html#PROTOCOL-MESSAGE-CONCEPTS).
"""

from __future__ import annotations

MAX_MESSAGE = 0x40000000

S_ERROR = 1
S_PARAMETER_STATUS = 2
S_NOTIFICATION = 4
S_COPY_IN = 8
S_COPY_OUT = 16
S_PARSE_COMPLETE = 32
S_CLOSE_COMPLETE = 64
S_COPY_BOTH = 128
S_NOTICE = 256
S_OTHER_CONTROL = 512

C_PARSE = 1
C_BIND = 2
C_DESCRIBE = 4
C_CLOSE = 8
C_QUERY = 16
C_SYNC = 32
C_TERMINATE = 64
C_FUNCTION = 128
C_COPY = 256
C_FLUSH = 512
C_EXECUTE = 1024
C_UNKNOWN = 2048

_SERVER_FLAGS = {
    ord("E"): S_ERROR, ord("S"): S_PARAMETER_STATUS, ord("A"): S_NOTIFICATION, ord("G"): S_COPY_IN,
    ord("H"): S_COPY_OUT, ord("1"): S_PARSE_COMPLETE, ord("3"): S_CLOSE_COMPLETE, ord("W"): S_COPY_BOTH,
    ord("N"): S_NOTICE, ord("R"): S_OTHER_CONTROL, ord("K"): S_OTHER_CONTROL,
}
_CLIENT_FLAGS = {
    ord("P"): C_PARSE, ord("B"): C_BIND, ord("E"): C_EXECUTE, ord("S"): C_SYNC, ord("Q"): C_QUERY,
    ord("D"): C_DESCRIBE, ord("C"): C_CLOSE, ord("X"): C_TERMINATE, ord("F"): C_FUNCTION, ord("d"): C_COPY,
    ord("c"): C_COPY, ord("f"): C_COPY, ord("H"): C_FLUSH,
}
_SYNCING = (ord("S"), ord("Q"), ord("F"))


def _length(buf: bytes | bytearray | memoryview, pos: int) -> int:
    mlen = int.from_bytes(buf[pos + 1 : pos + 5], "big")
    if mlen < 4 or mlen > MAX_MESSAGE:
        raise ValueError(f"invalid message length {mlen} for type {chr(buf[pos])!r}")
    return mlen


def scan_server(buf: bytes | bytearray | memoryview, start: int = 0) -> tuple[int, int, int, int]:
    n = len(buf)
    pos = end = start
    ready = status = flags = 0
    while pos + 5 <= n:
        t = buf[pos]
        mlen = _length(buf, pos)
        if pos + 1 + mlen > n:
            break
        if t == 90:
            ready += 1
            if mlen >= 5:
                status = buf[pos + 5]
        else:
            flags |= _SERVER_FLAGS.get(t, 0)
        pos += 1 + mlen
        end = pos
    return end, ready, status, flags


def scan_client(buf: bytes | bytearray | memoryview, start: int = 0) -> tuple[int, int, int, int]:
    n = len(buf)
    pos = end = start
    syncs = flags = last = 0
    while pos + 5 <= n:
        t = buf[pos]
        mlen = _length(buf, pos)
        if pos + 1 + mlen > n:
            break
        flags |= _CLIENT_FLAGS.get(t, C_UNKNOWN)
        if t in _SYNCING:
            syncs += 1
        last = t
        pos += 1 + mlen
        end = pos
    return end, syncs, flags, last


def split_messages(buf: bytes | bytearray | memoryview, start: int = 0) -> tuple[list[tuple[int, int, int]], int]:
    n = len(buf)
    pos = start
    out: list[tuple[int, int, int]] = []
    while pos + 5 <= n:
        mlen = _length(buf, pos)
        if pos + 1 + mlen > n:
            break
        out.append((buf[pos], pos, pos + 1 + mlen))
        pos += 1 + mlen
    return out, pos
