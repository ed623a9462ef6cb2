"""RESP framing and encoding for the Redis data plane (sans-IO: bytes in, commands/replies out).

``RequestParser`` and ``ReplyScanner`` come from ``native/resp.pyx`` when compiled, else from the pure twin
``nexus_fast.redis._resp_py`` (same contract; read that module's docstring). This module adds the encoders the
proxy uses for its own replies and the few places where it must look inside a reply (multi-key merge, compressed
values, cluster redirects). Values are parsed with hiredis only where a Python value is really needed (cluster
topology, HELLO), never on the forwarding path.

Measured (see docs/redis.md): for framing replies to forward them, scanning boundaries without building objects
beats hiredis (which must build every value and cannot return the wire bytes); hiredis stays the value parser.
"""

from __future__ import annotations

from typing import Any

import hiredis

from nexus_fast import _extensions

_impl = _extensions.load("resp")

RequestParser = _impl.RequestParser
ReplyScanner = _impl.ReplyScanner
encode_command = _impl.encode_command

OK = b"+OK\r\n"
PONG = b"+PONG\r\n"
NIL = b"$-1\r\n"
NULL_ARRAY = b"*-1\r\n"


def encode_error(message: str) -> bytes:
    """An error reply; the message's first word is the error code (``ERR``, ``CROSSSLOT``, ``NOAUTH``...)."""
    return b"-" + message.replace("\r", " ").replace("\n", " ").encode() + b"\r\n"


def encode_bulk(value: bytes | None) -> bytes:
    if value is None:
        return NIL
    return b"$%d\r\n%s\r\n" % (len(value), value)


def encode_integer(value: int) -> bytes:
    return b":%d\r\n" % value


def encode_simple(value: str) -> bytes:
    return b"+" + value.encode() + b"\r\n"


def encode_array(items: list[bytes]) -> bytes:
    """An array whose elements are already-encoded replies."""
    return b"*%d\r\n" % len(items) + b"".join(items)


def encode_value(value: Any, resp3: bool = False) -> bytes:
    """A Python value (str/bytes/int/None/list/dict) as a reply; maps become RESP3 maps or flat RESP2 arrays."""
    if value is None:
        return b"_\r\n" if resp3 else NIL
    if isinstance(value, bool):
        return encode_integer(int(value))
    if isinstance(value, int):
        return encode_integer(value)
    if isinstance(value, str):
        return encode_bulk(value.encode())
    if isinstance(value, bytes):
        return encode_bulk(value)
    if isinstance(value, dict):
        items = []
        for k, v in value.items():
            items.append(encode_value(k, resp3))
            items.append(encode_value(v, resp3))
        if resp3:
            return b"%%%d\r\n" % len(value) + b"".join(items)
        return encode_array(items)
    if isinstance(value, (list, tuple)):
        return encode_array([encode_value(v, resp3) for v in value])
    raise TypeError(f"cannot encode {type(value).__name__}")


def split_array(raw: bytes) -> list[bytes] | None:
    """The raw elements of an array reply (``*n``), or None when ``raw`` is not a non-null array."""
    if raw[:1] not in (b"*", b"~", b">"):
        return None
    eol = raw.find(b"\r\n")
    count = int(raw[1:eol])
    if count < 0:
        return None
    items = ReplyScanner().feed(raw[eol + 2:])
    return items if len(items) == count else None


def integer_of(raw: bytes) -> int | None:
    """The value of an integer reply, or None for any other reply."""
    if raw[:1] == b":":
        return int(raw[1:-2])
    return None


def bulk_payload(raw: bytes) -> bytes | None:
    """The payload of a non-null bulk string reply, or None."""
    if raw[:1] != b"$":
        return None
    eol = raw.find(b"\r\n")
    if raw[1:eol] == b"-1":
        return None
    return raw[eol + 2:-2]


def is_error(raw: bytes) -> bool:
    return raw[:1] == b"-" or raw[:1] == b"!"


def parse_value(raw: bytes) -> Any:
    """A reply as a Python value (errors as ``hiredis.ReplyError`` instances), via hiredis."""
    reader = hiredis.Reader()
    reader.feed(raw)
    return reader.gets()
