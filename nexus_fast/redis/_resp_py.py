"""Pure-Python twin of ``native/resp.pyx``: sans-IO RESP2/RESP3 framing for a proxy.

Two incremental parsers, both fed bytes and never touching a socket (RESP spec: https://redis.io/docs/reference/
protocol-spec/):

* ``RequestParser.feed(data) -> [(args, raw), ...]``: client commands. A command is a RESP array of bulk strings
  ("*<n>\\r\\n$<len>\\r\\n<bytes>\\r\\n..."), or an inline command (a line of space-separated words, quotes
  honoured as redis-cli writes them). ``args`` is the list of arguments as bytes; ``raw`` is the command's exact
  wire bytes, forwarded to a backend without re-encoding (inline commands are re-encoded as RESP arrays).
* ``ReplyScanner.feed(data) -> [raw, ...]``: server replies, RESP2 and RESP3 (``+ - : $ * _ , # ( = ! % ~ > |``),
  each returned as its complete wire bytes without building Python values, because the proxy forwards replies as
  they came. Nesting is tracked with a stack of remaining element counts, so a huge array arriving in many reads
  is scanned once, not re-scanned on every read.

Both are resumable across arbitrary read boundaries. Malformed input sets ``error`` (a message naming what was
wrong, as Redis's own "Protocol error: ..." replies do) and every later ``feed`` returns nothing: the caller
answers with the error and closes the connection, which is what Redis does.
"""

from __future__ import annotations

MAX_BULK_LENGTH = 512 * 1024 * 1024  # proto-max-bulk-len default
MAX_MULTIBULK_LENGTH = 1024 * 1024
MAX_INLINE_LENGTH = 64 * 1024  # PROTO_INLINE_MAX_SIZE
MAX_NESTING = 128

_AGGREGATE = frozenset(b"*~>")
_SIMPLE = frozenset(b"+-:_,#(")
_BLOB = frozenset(b"$=!")


def encode_command(args: list[bytes]) -> bytes:
    """``args`` as a RESP array of bulk strings."""
    out = [b"*%d\r\n" % len(args)]
    for a in args:
        out.append(b"$%d\r\n" % len(a))
        out.append(a)
        out.append(b"\r\n")
    return b"".join(out)


def _split_inline(line: bytes) -> list[bytes] | None:
    """Split an inline command like ``sdssplitargs``: whitespace separated, "double" and 'single' quotes."""
    args: list[bytes] = []
    i, n = 0, len(line)
    while True:
        while i < n and line[i] in b" \t\n\r\v\f":
            i += 1
        if i >= n:
            return args
        current = bytearray()
        quote = 0
        while i < n:
            c = line[i]
            if quote == 0x22:  # "
                if c == 0x5C and i + 1 < n:  # backslash escape
                    nxt = line[i + 1]
                    if nxt == 0x78 and i + 3 < n:  # \xHH
                        try:
                            current.append(int(line[i + 2:i + 4], 16))
                            i += 4
                            continue
                        except ValueError:
                            pass
                    current.append({0x6E: 10, 0x72: 13, 0x74: 9, 0x62: 8, 0x61: 7}.get(nxt, nxt))
                    i += 2
                    continue
                if c == 0x22:
                    if i + 1 < n and line[i + 1] not in b" \t\n\r\v\f":
                        return None
                    quote = 0
                    i += 1
                    break
                current.append(c)
                i += 1
            elif quote == 0x27:  # '
                if c == 0x5C and i + 1 < n and line[i + 1] == 0x27:
                    current.append(0x27)
                    i += 2
                    continue
                if c == 0x27:
                    if i + 1 < n and line[i + 1] not in b" \t\n\r\v\f":
                        return None
                    quote = 0
                    i += 1
                    break
                current.append(c)
                i += 1
            else:
                if c in b" \t\n\r\v\f":
                    break
                if c in (0x22, 0x27) and not current:
                    quote = c
                    i += 1
                    continue
                current.append(c)
                i += 1
        if quote:
            return None  # unbalanced quotes
        args.append(bytes(current))


def _parse_int(data: bytes | bytearray, start: int, end: int) -> int | None:
    text = bytes(data[start:end])
    if not text or len(text) > 20:
        return None
    body = text[1:] if text[:1] == b"-" else text
    if not body.isdigit():
        return None
    return int(text)


class RequestParser:
    """Incremental parser of client commands (see the module docstring)."""

    def __init__(
        self,
        max_bulk: int = MAX_BULK_LENGTH,
        max_args: int = MAX_MULTIBULK_LENGTH,
        max_inline: int = MAX_INLINE_LENGTH,
    ) -> None:
        self.max_bulk = max_bulk
        self.max_args = max_args
        self.max_inline = max_inline
        self.error: str | None = None
        self._buf = b""
        self._args: list[bytes] = []
        self._remaining = 0  # bulk strings still expected by the command in progress
        self._spanned = False  # the command in progress began in an earlier feed: re-encode its raw bytes

    def pending(self) -> int:
        """Bytes buffered but not yet part of a complete command."""
        return len(self._buf)

    def feed(self, data: bytes) -> list[tuple[list[bytes], bytes]]:
        if self.error is not None:
            return []
        buf = self._buf + data if self._buf else bytes(data)
        out: list[tuple[list[bytes], bytes]] = []
        pos, n = 0, len(buf)
        cmd_start = 0
        args = self._args
        remaining = self._remaining
        while pos < n:
            if remaining == 0:
                cmd_start = pos
                if buf[pos] == 0x2A:  # '*'
                    eol = buf.find(b"\r\n", pos + 1)
                    if eol < 0:
                        if n - pos > self.max_inline:
                            return self._fail(out, "too big mbulk count string")
                        break
                    count = _parse_int(buf, pos + 1, eol)
                    if count is None or count > self.max_args:
                        return self._fail(out, "invalid multibulk length")
                    pos = eol + 2
                    if count <= 0:
                        continue
                    args = []
                    remaining = count
                    self._spanned = False
                else:
                    nl = buf.find(b"\n", pos)
                    if nl < 0:
                        if n - pos > self.max_inline:
                            return self._fail(out, "too big inline request")
                        break
                    line = buf[pos:nl]
                    pos = nl + 1
                    words = _split_inline(line)
                    if words is None:
                        return self._fail(out, "unbalanced quotes in request")
                    if words:
                        out.append((words, encode_command(words)))
                    continue
            while remaining > 0:
                if pos >= n:
                    break
                if buf[pos] != 0x24:  # '$'
                    return self._fail(out, f"expected '$', got '{chr(buf[pos])}'")
                eol = buf.find(b"\r\n", pos + 1)
                if eol < 0:
                    if n - pos > 32:
                        return self._fail(out, "too big bulk count string")
                    break
                length = _parse_int(buf, pos + 1, eol)
                if length is None or length < 0 or length > self.max_bulk:
                    return self._fail(out, "invalid bulk length")
                end = eol + 2 + length
                if end + 2 > n:
                    break
                if buf[end:end + 2] != b"\r\n":
                    return self._fail(out, "bulk string not terminated by CRLF")
                args.append(buf[eol + 2:end])
                pos = end + 2
                remaining -= 1
            if remaining > 0:
                break
            raw = encode_command(args) if self._spanned else buf[cmd_start:pos]
            out.append((args, raw))
            self._spanned = False
            args = []
        # Keep the unconsumed tail; a command in progress keeps its parsed args and is re-encoded when done.
        if remaining > 0:
            self._spanned = True
        self._buf = buf[pos:]
        self._args = args
        self._remaining = remaining
        return out

    def _fail(self, out: list, message: str) -> list:
        self.error = message
        self._buf = b""
        self._args = []
        self._remaining = 0
        return out


class ReplyScanner:
    """Incremental framer of server replies: yields each complete reply's wire bytes (see the module docstring)."""

    def __init__(self, max_bulk: int = MAX_BULK_LENGTH) -> None:
        self.max_bulk = max_bulk
        self.error: str | None = None
        self._buf = b""
        self._pos = 0  # scan position inside _buf (the reply in progress starts at 0)
        self._stack: list[int] = []
        self.errors = 0  # top-level error replies (-ERR..., RESP3 !blob) framed so far: the node's error counter
        self.pushes = 0  # top-level RESP3 pushes (">"): out-of-band messages that answer no request

    def pending(self) -> int:
        return len(self._buf)

    def feed(self, data: bytes) -> list[bytes]:
        if self.error is not None:
            return []
        buf = self._buf + data if self._buf else bytes(data)
        out: list[bytes] = []
        n = len(buf)
        start = 0
        pos = self._pos
        stack = self._stack
        while pos < n:
            kind = buf[pos]
            eol = buf.find(b"\r\n", pos + 1)
            if eol < 0:
                if n - pos > MAX_INLINE_LENGTH * 16:
                    return self._fail(out, "reply line too long")
                break
            if kind in _SIMPLE:
                nxt = eol + 2
            elif kind in _BLOB:
                length = _parse_int(buf, pos + 1, eol)
                if length is None or length < -1 or length > self.max_bulk:
                    return self._fail(out, "invalid bulk length in reply")
                if length == -1:
                    nxt = eol + 2
                else:
                    end = eol + 2 + length
                    if end + 2 > n:
                        break
                    if buf[end:end + 2] != b"\r\n":
                        return self._fail(out, "bulk reply not terminated by CRLF")
                    nxt = end + 2
            elif kind in _AGGREGATE or kind == 0x25 or kind == 0x7C:  # % and | carry pairs
                count = _parse_int(buf, pos + 1, eol)
                if count is None or count < -1 or count > MAX_MULTIBULK_LENGTH * 64:
                    return self._fail(out, "invalid aggregate length in reply")
                if kind == 0x25:
                    count *= 2
                elif kind == 0x7C:
                    count = count * 2 + 1  # an attribute map precedes the reply it describes
                if count > 0:
                    if len(stack) >= MAX_NESTING:
                        return self._fail(out, "reply nested too deeply")
                    stack.append(count)
                    pos = eol + 2
                    continue
                nxt = eol + 2
            else:
                return self._fail(out, f"unknown reply type byte {bytes([kind])!r}")
            pos = nxt
            # One element finished: it completes its parent aggregates whose counts reach zero.
            while stack:
                stack[-1] -= 1
                if stack[-1]:
                    break
                stack.pop()
            if not stack:
                if buf[start] == 0x2D or buf[start] == 0x21:  # "-" or "!"
                    self.errors += 1
                elif buf[start] == 0x3E:  # ">"
                    self.pushes += 1
                out.append(buf[start:pos])
                start = pos
        self._buf = buf[start:]
        self._pos = pos - start
        return out

    def _fail(self, out: list, message: str) -> list:
        self.error = message
        self._buf = b""
        self._pos = 0
        self._stack = []
        return out
