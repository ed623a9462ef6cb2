"""Client side of the forwarding path: one Redis client connection (a thin asyncio Protocol).

Bytes in -> ``RequestParser`` -> one ``Pending`` per command appended to this session's FIFO -> the router.
Replies are written in command order as the head of the FIFO completes, coalesced into one write per server
read. Commands the proxy answers itself (PING, ECHO, HELLO, AUTH, SELECT 0, QUIT, CLIENT SETNAME...) go through
the same FIFO so pipelined order is kept. Backpressure: a client with ``max_pending_replies`` outstanding, or whose
socket buffer is full, is not read until it drains.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

from nexus_fast.redis import protocol
from nexus_fast.redis.commands import Kind, is_blocking_call, keys_of, lookup
from nexus_fast.redis.connection import SessionCore
from nexus_fast.redis.protocol import RequestParser, encode_error

if TYPE_CHECKING:
    from nexus_fast.redis.plane import RedisPool

_NO_AUTH_NEEDED = {"auth", "hello", "quit", "ping"}
QUEUED = b"+QUEUED\r\n"


class ClientSession(SessionCore, asyncio.Protocol):
    """``SessionCore`` (native/forward.pyx, or its twin) carries the per-request work: ``data_received``,
    ``reply_now``, ``reply_ready``, ``flush``; this class adds the protocol's general path."""

    def __init__(self, pool: RedisPool) -> None:
        SessionCore.__init__(self, pool, RequestParser(), pool.config.max_pending_replies, not pool.auth_required)
        self.name = b""
        self.id = pool.next_client_id()
        self.txn_failed = False  # a command was refused while queueing: EXEC answers EXECABORT, as Redis does

    # -- asyncio.Protocol
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.pool.session_opened(self)

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None
        self.closing = True
        self.pool.session_closed(self)

    def pause_writing(self) -> None:
        self.write_paused = True
        if self.transport is not None and not self.paused:
            self.transport.pause_reading()

    def resume_writing(self) -> None:
        self.write_paused = False
        if self.transport is not None and not self.paused:
            self.transport.resume_reading()

    # -- dispatch of everything but the hot path
    def dispatch(self, args: list[bytes], raw: bytes, route) -> None:  # type: ignore[no-untyped-def]
        spec = lookup(args)
        if spec is None:
            shown = args[0][:64].decode(errors="replace")
            self.reply_now(encode_error(f"ERR unknown command '{shown}'"))
            return
        if not self.authenticated and spec.name not in _NO_AUTH_NEEDED:
            self.reply_now(encode_error("NOAUTH Authentication required."))
            return
        if not spec.arity_ok(len(args)):
            self.reply_now(encode_error(f"ERR wrong number of arguments for '{spec.name}' command"))
            return
        kind = spec.kind
        if kind == Kind.PROXY:
            self.answer(spec.name, args)
        elif kind == Kind.UNSUPPORTED:
            self.pool.unsupported += 1
            self.reply_now(encode_error(
                f"ERR nexus-fast: '{spec.name.upper()}' is not supported through the proxy ({spec.reason})"))
        elif is_blocking_call(spec, args):
            self.reply_now(encode_error(f"ERR nexus-fast: '{spec.name.upper()} BLOCK' is not supported through "
                                        "the proxy (blocking commands would hold a shared server connection)"))
        else:
            route(self, spec, args, raw)

    def answer(self, name: str, args: list[bytes]) -> None:
        """Commands the proxy answers itself."""
        if name == "ping":
            self.reply_now(protocol.PONG if len(args) == 1 else protocol.encode_bulk(args[1]))
        elif name == "echo":
            self.reply_now(protocol.encode_bulk(args[1]))
        elif name == "quit":
            self.reply_now(protocol.OK)
            self.closing = True
        elif name == "select":
            if args[1] == b"0":
                self.reply_now(protocol.OK)
            else:
                self.reply_now(encode_error("ERR nexus-fast: only database 0 is available through the proxy"))
        elif name == "auth":
            self.reply_now(self._auth(args[1:]))
        elif name == "hello":
            self._hello(args[1:])
        elif name in ("client|setname", "client|setinfo"):
            if name == "client|setname":
                self.name = args[2]
            self.reply_now(protocol.OK)
        elif name == "client|getname":
            self.reply_now(protocol.encode_bulk(self.name or None))
        elif name == "client|id":
            self.reply_now(protocol.encode_integer(self.id))
        elif name in ("readonly", "readwrite"):
            self.reply_now(protocol.OK)
        elif name == "multi":
            if self.txn is not None:
                self.reply_now(encode_error("ERR MULTI calls can not be nested"))
            else:
                self.txn = []
                self.txn_failed = False
                self.reply_now(protocol.OK)
        elif name == "exec":
            if self.txn is None:
                self.reply_now(encode_error("ERR EXEC without MULTI"))
                return
            txn, self.txn = self.txn, None
            if self.txn_failed:
                self.reply_now(encode_error("EXECABORT Transaction discarded because of previous errors."))
            elif not txn:
                self.reply_now(b"*0\r\n")
            else:
                self.router.transaction(self, txn)
        elif name == "discard":
            if self.txn is None:
                self.reply_now(encode_error("ERR DISCARD without MULTI"))
            else:
                self.txn = None
                self.reply_now(protocol.OK)
        elif name == "reset":
            self.txn = None
            self.proto = 2
            self.authenticated = not self.pool.auth_required
            self.reply_now(protocol.encode_simple("RESET"))
        else:  # pragma: no cover - PROXY_COMMANDS and this switch are kept in step
            self.reply_now(encode_error(f"ERR nexus-fast: '{name}' not handled"))

    def queue_in_transaction(self, args: list[bytes], raw: bytes) -> None:
        """Between MULTI and EXEC: keyed commands are held here (+QUEUED) and go to their node together at EXEC;
        anything that cannot join a one-node transaction is refused and dooms it (EXECABORT), as Redis does with
        a command it rejects while queueing."""
        spec = lookup(args)
        if spec is not None and spec.name in ("exec", "discard", "multi", "quit", "reset") and self.authenticated:
            self.dispatch(args, raw, self.router.route)
            return
        if spec is None:
            error = f"ERR unknown command '{args[0][:64].decode(errors='replace')}'"
        elif not spec.arity_ok(len(args)):
            error = f"ERR wrong number of arguments for '{spec.name}' command"
        elif spec.kind in (Kind.SINGLE, Kind.SPLIT, Kind.MULTI) and not is_blocking_call(spec, args):
            keys = keys_of(spec, args)
            if keys:
                assert self.txn is not None
                self.txn.append((keys, raw))
                self.reply_now(QUEUED)
                return
            error = f"ERR nexus-fast: '{spec.name.upper()}' without keys cannot join a transaction through the proxy"
        else:
            error = (f"ERR nexus-fast: '{spec.name.upper()}' cannot join a transaction through the proxy (only "
                     "commands with keys on one node can)")
        self.txn_failed = True
        self.reply_now(encode_error(error))

    def _auth(self, params: list[bytes]) -> bytes:
        if not self.pool.auth_required:
            return encode_error("ERR AUTH <password> called without any password configured for the default user. "
                                "Are you sure your configuration is correct?")
        if len(params) == 1:
            user, password = b"default", params[0]
        elif len(params) == 2:
            user, password = params
        else:
            return encode_error("ERR syntax error")
        if self.pool.check_password(user, password):
            self.authenticated = True
            return protocol.OK
        self.pool.auth_failures += 1
        return encode_error("WRONGPASS invalid username-password pair or user is disabled.")

    def _hello(self, params: list[bytes]) -> None:
        proto = self.proto
        i = 0
        if params:
            try:
                proto = int(params[0])
            except ValueError:
                self.reply_now(encode_error("ERR Protocol version is not an integer or out of range"))
                return
            if proto not in (2, 3):
                self.reply_now(encode_error("NOPROTO unsupported protocol version"))
                return
            i = 1
        while i < len(params):
            option = params[i].upper()
            if option == b"AUTH" and i + 2 < len(params) + 0 and i + 2 <= len(params) - 1:
                answer = self._auth([params[i + 1], params[i + 2]])
                if answer != protocol.OK:
                    self.reply_now(answer)
                    return
                i += 3
            elif option == b"SETNAME" and i + 1 < len(params):
                self.name = params[i + 1]
                i += 2
            else:
                self.reply_now(encode_error(f"ERR Syntax error in HELLO option '{option.decode(errors='replace')}'"))
                return
        if not self.authenticated:
            self.reply_now(encode_error("NOAUTH HELLO must be called with the client already authenticated, "
                                        "otherwise the HELLO <proto> AUTH <user> <pass> option can be used to "
                                        "authenticate the client and select the RESP protocol version at the "
                                        "same time"))
            return
        self.proto = proto
        info = {"server": "redis", "version": "7.0.0", "proto": proto, "id": self.id,
                "mode": "cluster" if self.router.cluster_mode else "standalone", "role": "master", "modules": []}
        self.reply_now(protocol.encode_value(info, resp3=proto == 3))
