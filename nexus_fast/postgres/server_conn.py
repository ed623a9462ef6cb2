"""One connection from the proxy to a backend PostgreSQL: login (TLS, md5, SCRAM) and the data path.

Login uses asyncio streams (it happens once per server connection); afterwards the transport is switched to
``ServerConnection``, a thin ``asyncio.Protocol`` that hands every received buffer to the client session attached
to it (``session.on_server_data``), so server messages are forwarded as whole buffers.

Prepared statements in transaction mode (``PreparedTracker``): named statements are prepared on the server under a
name derived from their text (``nx_<hash>``), tracked in an LRU bounded by ``max_prepared_statements``. Responses
to Parse/Close the proxy injected are dropped from the stream; to know which ParseComplete belongs to which Parse,
every Parse sent is queued in order, and at each ReadyForQuery the Parses sent before the matching Sync that got
no ParseComplete are known to have failed (after an error the server skips to Sync, protocol-flow.html
"Extended Query") and are forgotten.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import ssl
import struct
import time
from collections import OrderedDict, deque
from dataclasses import dataclass
from typing import Any

from nexus_fast.postgres import protocol as pq
from nexus_fast.postgres.auth import AuthFailed, ScramClient, ScramKeys, md5_response, md5_secret

log = logging.getLogger("nexus_fast.postgres.server")


class ServerError(Exception):
    """A server connection could not be made or was refused; ``sqlstate`` is set when the server said why."""

    def __init__(self, message: str, sqlstate: str = "08006", fatal_from_server: bool = False):
        super().__init__(message)
        self.sqlstate = sqlstate
        self.fatal_from_server = fatal_from_server


@dataclass
class ServerLogin:
    """What the proxy needs to log in to a backend."""

    host: str
    port: int
    user: str
    database: str
    password: str | None = None  # plain
    md5_hex: str | None = None  # stored md5 secret without prefix
    scram_keys: ScramKeys | None = None  # with client_key
    params: dict[str, str] | None = None  # extra startup parameters (application_name ...)
    sslmode: str = "disable"
    ssl_context: ssl.SSLContext | None = None
    keepalive: bool = True


def set_keepalive(sock: socket.socket | None, enabled: bool, idle: float = 0, intvl: float = 0, cnt: int = 0) -> None:
    if sock is None or not enabled:
        return
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
        if idle and hasattr(socket, "TCP_KEEPIDLE"):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE, max(1, int(idle)))
        if intvl and hasattr(socket, "TCP_KEEPINTVL"):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPINTVL, max(1, int(intvl)))
        if cnt and hasattr(socket, "TCP_KEEPCNT"):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPCNT, cnt)
    except OSError:
        pass


async def _read_message(reader: asyncio.StreamReader) -> tuple[bytes, bytes]:
    header = await reader.readexactly(5)
    length = int.from_bytes(header[1:5], "big")
    if length < 4 or length > 0x40000000:
        raise ServerError("server sent an invalid message length", "08P01")
    return header[0:1], await reader.readexactly(length - 4)


async def open_server(login: ServerLogin) -> ServerConnection:
    """Connect and log in; the caller bounds the time (connect_timeout)."""
    reader, writer = await asyncio.open_connection(login.host, login.port, limit=1 << 20)
    try:
        set_keepalive(writer.get_extra_info("socket"), login.keepalive)
        if login.sslmode != "disable":
            writer.write(pq.ssl_request())
            answer = await reader.readexactly(1)
            if answer == b"S":
                ctx = login.ssl_context or ssl.create_default_context()
                await writer.start_tls(ctx, server_hostname=login.host if ctx.check_hostname else None)
            elif login.sslmode in ("require", "verify-ca", "verify-full"):
                raise ServerError(f"server {login.host}:{login.port} does not support TLS (server_tls_sslmode={login.sslmode})")
        params = {"user": login.user, "database": login.database}
        params.update(login.params or {})
        writer.write(pq.startup_message(params))
        server_params: dict[str, str] = {}
        pid = key = 0
        scram: ScramClient | None = None
        while True:
            kind, body = await _read_message(reader)
            if kind == b"R":
                code = int.from_bytes(body[:4], "big")
                if code == 0:
                    continue
                if code == 3:  # cleartext
                    if login.password is None:
                        raise ServerError("server asked for a password but none is configured", "28P01")
                    writer.write(pq.password_message(pq.cstr(login.password)))
                elif code == 5:  # md5
                    hex_part = login.md5_hex or (md5_secret(login.user, login.password)[3:] if login.password is not None else None)
                    if hex_part is None:
                        raise ServerError("server asked for md5 but no password or md5 secret is configured", "28P01")
                    writer.write(pq.password_message(md5_response(hex_part, body[4:8]) + b"\x00"))
                elif code == 10:  # SASL
                    mechanisms = body[4:].split(b"\x00")
                    if b"SCRAM-SHA-256" not in mechanisms:
                        raise ServerError("server offers no supported SASL mechanism", "28000")
                    try:
                        scram = ScramClient(login.password, login.scram_keys)
                    except AuthFailed as exc:
                        raise ServerError(str(exc), "28P01") from None
                    writer.write(pq.sasl_initial_response("SCRAM-SHA-256", scram.first()))
                elif code == 11 and scram is not None:
                    try:
                        writer.write(pq.password_message(scram.final(body[4:])))
                    except AuthFailed as exc:
                        raise ServerError(str(exc), "28P01") from None
                elif code == 12 and scram is not None:
                    try:
                        scram.verify(body[4:])
                    except AuthFailed as exc:
                        raise ServerError(str(exc), "28P01") from None
                else:
                    raise ServerError(f"unsupported authentication request {code}", "28000")
            elif kind == b"S":
                name, pos = pq.read_cstr(body, 0)
                value, _ = pq.read_cstr(body, pos)
                server_params[name.decode()] = value.decode()
            elif kind == b"K":
                pid, key = struct.unpack("!iI", body[:8])
            elif kind == b"E":
                fields = pq.parse_error_fields(body)
                raise ServerError(fields.get("M", "server error"), fields.get("C", "08006"), fatal_from_server=True)
            elif kind == b"Z":
                break
            # NoticeResponse during login is ignored.
        transport = writer.transport
        conn = ServerConnection(transport, login, server_params, pid, key)
        # The StreamWriter closes its transport when collected: keep it alive as long as the connection.
        conn._writer = writer
        transport.set_protocol(conn)
        return conn
    except BaseException:
        writer.transport.abort()  # at once: a half-open login must not outlive its caller's loop
        raise


class PreparedTracker:
    """Server-side prepared statements of one connection, and the Parse/Close responses to drop (see module doc)."""

    __slots__ = ("close_queue", "closes_sent", "lru", "marks", "parse_queue", "parses_sent", "ready_seen", "syncs_sent")

    def __init__(self) -> None:
        self.lru: OrderedDict[bytes, None] = OrderedDict()
        self.parse_queue: deque[tuple[int, bytes | None, bool]] = deque()  # (seq, server name or None, drop)
        self.close_queue: deque[tuple[int, bool]] = deque()  # (seq, drop)
        self.parses_sent = 0
        self.closes_sent = 0
        self.syncs_sent = 0
        self.ready_seen = 0
        self.marks: deque[tuple[int, int, int]] = deque()  # (sync ordinal, parses_sent, closes_sent) at that Sync

    @property
    def busy(self) -> bool:
        return bool(self.parse_queue or self.close_queue)

    def clear(self) -> None:
        self.lru.clear()
        self.parse_queue.clear()
        self.close_queue.clear()
        self.marks.clear()

    def reconcile(self) -> None:
        """Called after each ReadyForQuery: Parses/Closes sent before that Sync and still queued have failed."""
        while self.marks and self.marks[0][0] <= self.ready_seen:
            _, parses, closes = self.marks.popleft()
            while self.parse_queue and self.parse_queue[0][0] < parses:
                _, name, _ = self.parse_queue.popleft()
                if name is not None:
                    self.lru.pop(name, None)
            while self.close_queue and self.close_queue[0][0] < closes:
                self.close_queue.popleft()


class ServerConnection(asyncio.Protocol):
    """A logged-in backend connection; owned by a Pool, lent to one client session at a time."""

    def __init__(self, transport: Any, login: ServerLogin, params: dict[str, str], pid: int, key: int):
        self.transport = transport
        self.login = login
        self.params = params
        self.pid = pid
        self.key = key
        self.created_at = time.monotonic()
        self.last_used = self.created_at
        self.session: Any = None  # the client session it serves now
        self.pool: Any = None
        self.closed = False
        self.close_reason = ""
        self.status = b"I"  # transaction status of the last ReadyForQuery
        self.prepared = PreparedTracker()
        self.swallow_ready = 0  # internal queries whose responses (through ReadyForQuery) are not forwarded
        self._internal: asyncio.Future[list[tuple[bytes, bytes]]] | None = None
        self._internal_buf = bytearray()
        self._internal_msgs: list[tuple[bytes, bytes]] = []
        self.id = id(self)
        self.tested = False
        self.dirty = False  # server state unknown (client left mid-query): never reuse
        self._writer: Any = None
        self.param_sig: tuple[str, ...] = ()
        self.unsynced = False  # the last client batch did not end with Sync/Query (see session._UNSYNCED)  # the client parameter signature this server was last set to

    @property
    def address(self) -> str:
        return f"{self.login.host}:{self.login.port}"

    # --- asyncio.Protocol
    def data_received(self, data: bytes) -> None:
        if self._internal is not None:
            self._internal_data(data)
            return
        session = self.session
        if session is not None:
            session.on_server_data(data)
            return
        # Data on an idle connection: an unsolicited FATAL (admin shutdown, idle timeout) or NOTICE. Close it.
        self.close("server sent data while idle")

    def connection_lost(self, exc: Exception | None) -> None:
        was_closed = self.closed
        self.closed = True
        if not self.close_reason:
            self.close_reason = "server closed the connection"
        if self._internal is not None and not self._internal.done():
            self._internal.set_exception(ServerError(self.close_reason))
        session = self.session
        if session is not None:
            session.on_server_lost(self)
        if self.pool is not None and not was_closed:
            self.pool.on_server_closed(self)

    def pause_writing(self) -> None:
        if self.session is not None:
            self.session.pause_client_reading()

    def resume_writing(self) -> None:
        if self.session is not None:
            self.session.resume_client_reading()

    # --- control
    def write(self, data: bytes | bytearray | memoryview) -> None:
        self.transport.write(data)

    def close(self, reason: str = "") -> None:
        if not self.close_reason:
            self.close_reason = reason
        if not self.closed:
            self.closed = True
            try:
                self.transport.write(pq.terminate())
            except Exception:
                pass
            self.transport.close()
            if self.pool is not None:
                self.pool.on_server_closed(self)

    async def run_internal(self, sql: str, timeout: float) -> list[tuple[bytes, bytes]]:
        """Run a simple query the proxy owns (check, reset, rollback); raise ServerError on an ErrorResponse."""
        if self.closed:
            raise ServerError(self.close_reason or "closed")
        loop = asyncio.get_running_loop()
        self._internal = loop.create_future()
        self._internal_buf.clear()
        self._internal_msgs = []
        self.transport.write(pq.query(sql))
        try:
            messages = await asyncio.wait_for(self._internal, timeout if timeout > 0 else None)
        finally:
            self._internal = None
        for kind, body in messages:
            if kind == b"E":
                fields = pq.parse_error_fields(body)
                raise ServerError(fields.get("M", "error"), fields.get("C", "XX000"))
        return messages

    def _internal_data(self, data: bytes) -> None:
        buf = self._internal_buf
        buf += data
        pos = 0
        while len(buf) - pos >= 5:
            length = int.from_bytes(buf[pos + 1 : pos + 5], "big")
            if length < 4:
                self.close("invalid message from server")
                return
            if len(buf) - pos < 1 + length:
                break
            kind = bytes(buf[pos : pos + 1])
            body = bytes(buf[pos + 5 : pos + 1 + length])
            pos += 1 + length
            if kind == b"S":
                name, p2 = pq.read_cstr(body, 0)
                value, _ = pq.read_cstr(body, p2)
                self.params[name.decode()] = value.decode()
            self._internal_msgs.append((kind, body))
            if kind == b"Z":
                self.status = body[:1]
                del buf[:pos]
                fut = self._internal
                if fut is not None and not fut.done():
                    fut.set_result(self._internal_msgs)
                return
        del buf[:pos]


async def send_cancel(host: str, port: int, pid: int, key: int, timeout: float = 5.0) -> None:
    """CancelRequest on a new connection (protocol-flow.html#PROTOCOL-FLOW-CANCELING-REQUESTS)."""
    try:
        _reader, writer = await asyncio.wait_for(asyncio.open_connection(host, port), timeout)
    except (TimeoutError, OSError):
        return
    try:
        writer.write(pq.cancel_request(pid, key))
        await writer.drain()
        # The server closes the connection after processing; wait briefly so the cancel lands first.
        await asyncio.wait_for(_reader.read(1), timeout)
    except (TimeoutError, OSError):
        pass
    finally:
        writer.close()
