"""PostgreSQL frontend/backend protocol v3, sans-IO: message codecs and the client login state machine.

References are to https://www.postgresql.org/docs/current/protocol-flow.html (flow) and
protocol-message-formats.html (layouts). Nothing here touches a socket: ``ClientLogin`` is fed the bytes a client
sent and returns events; the builders return the bytes to send. Framing after login (the hot path) is done by
``nexus_fast.postgres.framing`` (Cython with a pure twin).

Startup phase (protocol-flow.html#PROTOCOL-FLOW-START-UP): the first packet has no type byte, only
``int32 length, int32 code``. Codes: 196608 (3.0) StartupMessage, 80877103 SSLRequest, 80877104 GSSENCRequest,
80877102 CancelRequest. After SSLRequest the server answers one byte, ``S`` or ``N``; after GSSENCRequest we always
answer ``N`` (GSSAPI encryption is not supported, the client then continues in the clear or gives up).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field

PROTOCOL_3_0 = 196608
SSL_REQUEST = 80877103
GSSENC_REQUEST = 80877104
CANCEL_REQUEST = 80877102
MAX_STARTUP_PACKET = 10000  # PostgreSQL's own MAX_STARTUP_PACKET_LENGTH

_I32 = struct.Struct("!i")
_HDR = struct.Struct("!ci")


class ProtocolViolation(Exception):
    """The peer sent bytes that are not valid protocol; the connection must be closed (after an ErrorResponse)."""

    def __init__(self, message: str, sqlstate: str = "08P01"):
        super().__init__(message)
        self.sqlstate = sqlstate


# ---------------------------------------------------------------------------------------------- builders


def message(kind: bytes, body: bytes = b"") -> bytes:
    return _HDR.pack(kind, len(body) + 4) + body


def cstr(text: str | bytes) -> bytes:
    data = text.encode() if isinstance(text, str) else text
    return data + b"\x00"


def error_response(message_text: str, sqlstate: str = "08P01", severity: str = "FATAL") -> bytes:
    """ErrorResponse ('E') with severity, SQLSTATE and message fields (protocol-error-fields.html)."""
    body = b"S" + cstr(severity) + b"V" + cstr(severity) + b"C" + cstr(sqlstate) + b"M" + cstr(message_text) + b"\x00"
    return message(b"E", body)


def notice_response(message_text: str, sqlstate: str = "01000", severity: str = "WARNING") -> bytes:
    body = b"S" + cstr(severity) + b"V" + cstr(severity) + b"C" + cstr(sqlstate) + b"M" + cstr(message_text) + b"\x00"
    return message(b"N", body)


def ready_for_query(status: bytes = b"I") -> bytes:
    return message(b"Z", status)


def auth_ok() -> bytes:
    return message(b"R", _I32.pack(0))


def auth_cleartext_request() -> bytes:
    return message(b"R", _I32.pack(3))


def auth_md5_request(salt: bytes) -> bytes:
    return message(b"R", _I32.pack(5) + salt)


def auth_sasl_request(mechanisms: tuple[str, ...] = ("SCRAM-SHA-256",)) -> bytes:
    return message(b"R", _I32.pack(10) + b"".join(cstr(m) for m in mechanisms) + b"\x00")


def auth_sasl_continue(data: bytes) -> bytes:
    return message(b"R", _I32.pack(11) + data)


def auth_sasl_final(data: bytes) -> bytes:
    return message(b"R", _I32.pack(12) + data)


def parameter_status(name: str, value: str) -> bytes:
    return message(b"S", cstr(name) + cstr(value))


def backend_key_data(pid: int, key: int) -> bytes:
    return message(b"K", struct.pack("!iI", pid, key))


def startup_message(params: dict[str, str]) -> bytes:
    body = _I32.pack(PROTOCOL_3_0) + b"".join(cstr(k) + cstr(v) for k, v in params.items()) + b"\x00"
    return _I32.pack(len(body) + 4) + body


def ssl_request() -> bytes:
    return struct.pack("!ii", 8, SSL_REQUEST)


def cancel_request(pid: int, key: int) -> bytes:
    return struct.pack("!iiiI", 16, CANCEL_REQUEST, pid, key)


def password_message(data: bytes) -> bytes:
    return message(b"p", data)


def sasl_initial_response(mechanism: str, data: bytes) -> bytes:
    return message(b"p", cstr(mechanism) + _I32.pack(len(data)) + data)


def query(sql: str) -> bytes:
    return message(b"Q", cstr(sql))


def terminate() -> bytes:
    return message(b"X")


def sync() -> bytes:
    return message(b"S")


def parse(name: str | bytes, sql: bytes, param_types: bytes = b"\x00\x00") -> bytes:
    """Parse ('P'): statement name, query text (bytes without NUL), raw ``int16 n + n*int32`` parameter types."""
    return message(b"P", cstr(name) + sql + b"\x00" + param_types)


def close_statement(name: str | bytes) -> bytes:
    return message(b"C", b"S" + cstr(name))


# ---------------------------------------------------------------------------------------------- parsers


def read_cstr(data: bytes | memoryview, pos: int) -> tuple[bytes, int]:
    end = bytes(data[pos:]).find(b"\x00") if isinstance(data, memoryview) else data.find(b"\x00", pos)
    if end < 0:
        raise ProtocolViolation("missing string terminator")
    if isinstance(data, memoryview):
        end += pos
    return bytes(data[pos:end]), end + 1


def parse_error_fields(body: bytes) -> dict[str, str]:
    """Fields of an ErrorResponse/NoticeResponse body keyed by their one-letter code."""
    fields: dict[str, str] = {}
    pos = 0
    while pos < len(body) and body[pos] != 0:
        code = chr(body[pos])
        value, pos = read_cstr(body, pos + 1)
        fields[code] = value.decode("utf-8", "replace")
    return fields


@dataclass(frozen=True)
class ParseMsg:
    name: bytes
    sql: bytes
    param_types: bytes  # raw "int16 n, n * int32" tail


def decode_parse(body: bytes) -> ParseMsg:
    name, pos = read_cstr(body, 0)
    sql, pos = read_cstr(body, pos)
    tail = body[pos:]
    if len(tail) < 2 or len(tail) != 2 + 4 * int.from_bytes(tail[:2], "big"):
        raise ProtocolViolation("malformed Parse message")
    return ParseMsg(name, sql, tail)


def decode_bind_names(body: bytes) -> tuple[bytes, bytes, int]:
    """(portal, statement, offset of the rest) of a Bind body."""
    portal, pos = read_cstr(body, 0)
    stmt, pos = read_cstr(body, pos)
    return portal, stmt, pos


def decode_target(body: bytes) -> tuple[bytes, bytes]:
    """(kind b'S'|b'P', name) of a Describe or Close body."""
    if len(body) < 2 or body[0:1] not in (b"S", b"P"):
        raise ProtocolViolation("malformed Describe/Close message")
    name, _ = read_cstr(body, 1)
    return body[0:1], name


# ---------------------------------------------------------------------------------------------- client login


@dataclass(frozen=True)
class SSLRequested:
    pass


@dataclass(frozen=True)
class GSSENCRequested:
    pass


@dataclass(frozen=True)
class CancelRequested:
    pid: int
    key: int


@dataclass(frozen=True)
class StartupReceived:
    params: dict[str, str] = field(default_factory=dict)
    minor: int = 0

    @property
    def user(self) -> str:
        return self.params.get("user", "")

    @property
    def database(self) -> str:
        return self.params.get("database") or self.user


@dataclass(frozen=True)
class PasswordReceived:
    """A 'p' message: cleartext/md5 password, SASLInitialResponse or SASLResponse (meaning depends on the state)."""

    data: bytes


LoginEvent = SSLRequested | GSSENCRequested | CancelRequested | StartupReceived | PasswordReceived


class ClientLogin:
    """Sans-IO login phase of a client connection: ``feed(bytes) -> list[event]``.

    Before StartupMessage the packets are untyped; afterwards only PasswordMessage ('p') is valid until the
    proxy sends AuthenticationOk. Any other bytes raise ProtocolViolation (the caller answers with
    ``error_response`` and closes, as PostgreSQL does).
    """

    def __init__(self) -> None:
        self._buf = bytearray()
        self.started = False
        self.ssl_requests = 0

    def feed(self, data: bytes) -> list[LoginEvent]:
        self._buf += data
        events: list[LoginEvent] = []
        while True:
            event = self._next()
            if event is None:
                return events
            events.append(event)
            if isinstance(event, (SSLRequested, CancelRequested)):
                # After SSLRequest the TLS handshake bytes follow; the caller takes over (see ``take_rest``).
                return events

    def take_rest(self) -> bytes:
        rest = bytes(self._buf)
        self._buf.clear()
        return rest

    def _next(self) -> LoginEvent | None:
        buf = self._buf
        if not self.started:
            if len(buf) < 8:
                return None
            length = int.from_bytes(buf[0:4], "big", signed=True)
            if length < 8 or length > MAX_STARTUP_PACKET:
                raise ProtocolViolation("invalid length of startup packet")
            if len(buf) < length:
                return None
            packet = bytes(buf[:length])
            del buf[:length]
            code = int.from_bytes(packet[4:8], "big")
            if code == SSL_REQUEST and length == 8:
                self.ssl_requests += 1
                if self.ssl_requests > 1:
                    raise ProtocolViolation("duplicate SSLRequest")
                return SSLRequested()
            if code == GSSENC_REQUEST and length == 8:
                return GSSENCRequested()
            if code == CANCEL_REQUEST and length == 16:
                pid, key = struct.unpack("!iI", packet[8:16])
                return CancelRequested(pid, key)
            if code >> 16 != 3:
                raise ProtocolViolation(f"unsupported frontend protocol {code >> 16}.{code & 0xFFFF}", "0A000")
            # Body: (name NUL value NUL)* NUL. One split instead of a scan per string (this runs per connection).
            fields = packet[8:].split(b"\x00")
            if len(fields) < 2 or len(fields) % 2 or fields[-1] or fields[-2]:
                raise ProtocolViolation("malformed startup packet")
            keys, values = fields[0:-2:2], fields[1:-2:2]
            if not all(keys):
                raise ProtocolViolation("malformed startup packet")
            try:
                params = {k.decode(): v.decode() for k, v in zip(keys, values, strict=True)}
            except UnicodeDecodeError:
                raise ProtocolViolation("invalid startup parameter encoding") from None
            if not params.get("user"):
                raise ProtocolViolation("no PostgreSQL user name specified in startup packet", "28000")
            self.started = True
            return StartupReceived(params, code & 0xFFFF)
        if len(buf) < 5:
            return None
        kind = buf[0]
        length = int.from_bytes(buf[1:5], "big")
        if kind != ord("p"):
            raise ProtocolViolation(f"expected password response, got message type {chr(kind)!r}")
        if length < 4 or length > MAX_STARTUP_PACKET:
            raise ProtocolViolation("invalid message length")
        if len(buf) < 1 + length:
            return None
        body = bytes(buf[5 : 1 + length])
        del buf[: 1 + length]
        return PasswordReceived(body)


def decode_sasl_initial(data: bytes) -> tuple[str, bytes]:
    """(mechanism, client-first-message) of a SASLInitialResponse body."""
    mech, pos = read_cstr(data, 0)
    if len(data) < pos + 4:
        raise ProtocolViolation("malformed SASLInitialResponse")
    n = int.from_bytes(data[pos : pos + 4], "big", signed=True)
    payload = data[pos + 4 :] if n < 0 else data[pos + 4 : pos + 4 + n]
    return mech.decode("ascii", "replace"), payload
