"""A client connection: login, then relaying between the client and the server connection lent to it.

Routing seam (for the routing engineer, who owns ``router.py``): for every transaction (transaction mode), every
statement (statement mode) or once per session (session mode) this module calls
``plane.router_for(database).route(sql, self.route_state)`` with the first statement's text (a Query's SQL, a
Parse's SQL, or the SQL of the named statement a Bind executes) and the per-client ``ClientRouteState`` from
``nexus_fast.postgres.route``; it then lends a connection from the pool of ``decision.server_index``. A failed
connect is reported with ``router.on_server_error(server_index, reason)`` when the router has that method.
``route_state.in_transaction`` is kept current from ReadyForQuery. Databases with a single server skip the router.

Admin console seam (``admin_console.py``, also theirs): a client of database ``pgbouncer`` or ``nexus`` whose user
is in ``admin_users`` or ``stats_users`` gets ``AdminConsole(plane)``; each simple Query is answered by
``await console.execute(sql, session)`` which returns the response bytes (RowDescription/DataRow/CommandComplete
or ErrorResponse) without ReadyForQuery; the session appends ReadyForQuery. ``session.is_admin`` says whether the
user may run commands that change state. ``plane.sessions`` and ``Pool.servers()`` / ``Pool.refresh_stats()``
feed SHOW CLIENTS / SERVERS / POOLS.

Data path (transaction mode): complete client messages are forwarded as one buffer; the Cython framer counts the
Query/Sync messages (each answered by one ReadyForQuery) and finds the last ReadyForQuery's status in the server's
bytes, so the connection is released when the count drains and the status is idle ('I'). Only buffers holding
named prepared-statement messages, ParameterStatus or responses the proxy must drop are parsed message by message.
"""

from __future__ import annotations

import asyncio
import logging
import os
import ssl
import struct
import time
from bisect import bisect_left
from typing import TYPE_CHECKING, Any

import xxhash

from nexus_fast.observe.metrics import LATENCY_BUCKETS
from nexus_fast.postgres import framing as fr
from nexus_fast.postgres import protocol as pq
from nexus_fast.postgres.auth import AuthFailed, ScramKeys, ScramServer, Secret
from nexus_fast.postgres.route import ClientRouteState, RouteDecision
from nexus_fast.postgres.server_conn import ServerConnection, ServerError

if TYPE_CHECKING:
    from nexus_fast.postgres.plane import PostgresPlane
    from nexus_fast.postgres.pool import Pool

log = logging.getLogger("nexus_fast.postgres.session")

ADMIN_DATABASES = ("pgbouncer", "nexus")
# Parameters PgBouncer tracks per client and re-applies on whichever server serves it (its "track_extra_parameters"
# defaults); other startup parameters are not forwarded to shared server connections.
TRACKED_PARAMS = ("client_encoding", "DateStyle", "TimeZone", "standard_conforming_strings", "application_name", "IntervalStyle")
_TRACKED_LOWER = {p.lower(): p for p in TRACKED_PARAMS}
CLOSED_DUMMY = b"nx_closed"  # Close of a name never prepared is not an error (protocol-message-formats.html, Close)
_SESSION_IDS = iter(range(1, 1 << 62))

LOGIN, AUTH, CONNECTING, READY, ADMIN, CLOSED = range(6)
# A batch ending in one of these leaves the server inside an extended-protocol exchange awaiting Sync.
_UNSYNCED = frozenset(b"PBEDCH")
_STATUS_BYTES = [bytes((i,)) for i in range(256)]
_bisect = bisect_left
_monotonic = time.monotonic
_wall = time.time
_BUCKETS = LATENCY_BUCKETS
_scan_server = fr.scan_server
_scan_client = fr.scan_client
_C_NAMED = fr.C_PARSE | fr.C_BIND | fr.C_DESCRIBE | fr.C_CLOSE
_S_PARAM = fr.S_PARAMETER_STATUS
_S_PC_CC = fr.S_PARSE_COMPLETE | fr.S_CLOSE_COMPLETE
_TERMINATE = pq.terminate()
_BUFFER_HIGH = 1 << 20  # bytes buffered from a client waiting for a server before its reading is paused


def _norm(value: str) -> str:
    return value.lower().replace("-", "").replace("_", "")


class ClientSession(asyncio.Protocol):
    # Slots: one session per client connection (10,000 idle clients per worker) and faster attribute access on
    # the per-transaction path.
    __slots__ = (
        "_auth",
        "_closing",
        "_console",
        "_decision",
        "_discard_all",
        "_idle_timeouts",
        "_param_sig",
        "_query_timeout",
        "_salt",
        "_slow_flags",
        "_tasks",
        "_timers",
        "_waiter",
        "addr",
        "config",
        "connect_time",
        "database",
        "id",
        "inbuf",
        "is_admin",
        "key",
        "login",
        "params",
        "paused",
        "pending",
        "pid",
        "plane",
        "pool_mode",
        "pools",
        "port",
        "prepared",
        "query_start",
        "request_time",
        "route_state",
        "scram_client_keys",
        "secret",
        "server",
        "server_pool",
        "single_server",
        "srv_tail",
        "startup_params",
        "state",
        "tls",
        "track_prepared",
        "transport",
        "user",
        "waiting",
        "xact_start",
    )

    def __init__(self, plane: PostgresPlane):
        self.plane = plane
        self.config = plane.config
        self.state = LOGIN
        self.transport: Any = None
        self.login = pq.ClientLogin()
        self.id = next(_SESSION_IDS)
        self.addr = ""
        self.port = 0
        self.tls = False
        self.user = ""
        self.database = ""
        self.startup_params: dict[str, str] = {}
        self.params: dict[str, str] = {}  # what the client believes the server parameters are
        self.pid = 0
        self.key = 0
        self.is_admin = False
        self.pool_mode = "transaction"
        self.track_prepared = False
        self.route_state = ClientRouteState("", "")
        self.server: ServerConnection | None = None
        self.server_pool: Pool | None = None
        self.pools: dict[int, Pool] = {}
        self.single_server = True
        self.inbuf = bytearray()
        self.srv_tail = b""
        self.pending = 0
        self.waiting = False
        self.paused = False
        self.connect_time = time.time()
        self.request_time = time.time()
        self.xact_start = 0.0
        self.query_start = 0.0
        self.prepared: dict[bytes, tuple[bytes, bytes, bytes]] = {}  # client name -> (sql, param types, server name)
        self.scram_client_keys: ScramKeys | None = None
        self.secret: Secret | None = None
        self._timers: dict[str, asyncio.TimerHandle] = {}
        self._tasks: set[asyncio.Task[Any]] = set()
        self._auth: Any = None
        self._salt = b""
        self._console: Any = None
        self._closing = False
        self._waiter: tuple[Pool, Any] | None = None
        self._param_sig: tuple[str, ...] = ()
        self._decision: Any = None  # the router's decision for the transaction in progress
        self._discard_all = False
        self._idle_timeouts = bool(self.config.client_idle_timeout or self.config.idle_transaction_timeout)
        self._query_timeout = self.config.query_timeout
        self._slow_flags = fr.C_TERMINATE | fr.C_UNKNOWN  # plus the named-statement messages when tracking

    # ------------------------------------------------------------------ asyncio plumbing
    def connection_made(self, transport: Any) -> None:
        self.transport = transport
        peer = transport.get_extra_info("peername")
        if isinstance(peer, tuple):
            self.addr, self.port = str(peer[0]), int(peer[1])
        else:
            self.addr = "unix"
        # TCP keepalive is set on the listening socket; accepted sockets inherit it (Linux), saving syscalls.
        self.plane.sessions.add(self)
        if self.config.client_login_timeout:
            self._timer("login", self.config.client_login_timeout, self._login_timeout)

    def _login_timeout(self) -> None:
        if self.state in (LOGIN, AUTH, CONNECTING):
            self.fatal("client_login_timeout", "08P01")

    def data_received(self, data: bytes) -> None:
        state = self.state
        if state == READY:
            self.request_time = _wall()
            if self._timers:
                self._cancel_timer("idle")
            if data == _TERMINATE and self.server is None and not self.inbuf:
                self.transport.close()  # the common goodbye of a connection-per-transaction client
                return
            if self.inbuf or self.waiting:
                self.inbuf += data
                if not self.waiting:
                    self._pump()
                elif len(self.inbuf) > _BUFFER_HIGH:
                    self.pause_client_reading()
            else:
                self._pump_fresh(data)
        elif state in (LOGIN, AUTH):
            self._login_data(data)
        elif state == ADMIN:
            self.inbuf += data
            self._admin_pump()
        elif state == CONNECTING:
            self.inbuf += data

    def connection_lost(self, exc: Exception | None) -> None:
        self.state = CLOSED
        self.plane.sessions.discard(self)
        self.plane.cancel_keys.pop((self.pid, self.key), None)
        for handle in self._timers.values():
            handle.cancel()
        self._timers.clear()
        for task in list(self._tasks):
            task.cancel()
        if self._waiter is not None:
            self._waiter[0].cancel(self._waiter[1])
            self._waiter = None
        server, pool = self.server, self.server_pool
        self.server = None
        if server is not None and pool is not None:
            server.session = None
            self._return_dirty(server, pool)

    def pause_writing(self) -> None:
        # The client reads slower than the server sends: stop reading the server (backpressure).
        if self.server is not None and not self.server.closed:
            self.server.transport.pause_reading()

    def resume_writing(self) -> None:
        if self.server is not None and not self.server.closed:
            self.server.transport.resume_reading()

    def pause_client_reading(self) -> None:
        if not self.paused and self.transport is not None:
            self.paused = True
            self.transport.pause_reading()

    def resume_client_reading(self) -> None:
        if self.paused and self.transport is not None and self.state != CLOSED:
            self.paused = False
            self.transport.resume_reading()

    def _spawn(self, coro: Any) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)

    def _task_done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            exc = task.exception()
            log.error("session %s task failed: %r", self.id, exc)
            self.fatal(f"internal error: {exc}", "XX000")

    def _timer(self, name: str, delay: float, callback: Any) -> None:
        old = self._timers.pop(name, None)
        if old is not None:
            old.cancel()
        self._timers[name] = asyncio.get_running_loop().call_later(delay, callback)

    def _cancel_timer(self, name: str) -> None:
        handle = self._timers.pop(name, None)
        if handle is not None:
            handle.cancel()

    def write(self, data: bytes | bytearray) -> None:
        if self.state != CLOSED and self.transport is not None and not self.transport.is_closing():
            self.transport.write(data)

    def fatal(self, message: str, sqlstate: str = "08P01") -> None:
        """Send a FATAL ErrorResponse and close (PostgreSQL's behaviour for errors outside a query)."""
        if self.transport is None or self._closing:
            return
        self._closing = True
        self.write(pq.error_response(message, sqlstate))
        self.transport.close()

    def close(self) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.close()

    # ------------------------------------------------------------------ login
    def _login_data(self, data: bytes) -> None:
        try:
            events = self.login.feed(data)
        except pq.ProtocolViolation as exc:
            self.fatal(str(exc), exc.sqlstate)
            return
        for event in events:
            if isinstance(event, pq.SSLRequested):
                self._on_ssl_request()
                return
            if isinstance(event, pq.GSSENCRequested):
                self.write(b"N")  # GSSAPI encryption is not supported; the client may go on in the clear
            elif isinstance(event, pq.CancelRequested):
                self.plane.cancel_from_client(event.pid, event.key)
                self.close()
                return
            elif isinstance(event, pq.StartupReceived):
                self._on_startup(event)
                if self.state == AUTH and self.config.auth_type == "trust":
                    # No password exchange follows: bytes a client pipelines after the startup packet are
                    # requests, kept for when the session is READY.
                    self.state = CONNECTING
                    self.inbuf += self.login.take_rest()
                    if not self._login_fast():
                        self._spawn(self._login_complete())
                    return
            elif isinstance(event, pq.PasswordReceived):
                self._on_password(event.data)

    def _on_ssl_request(self) -> None:
        ctx = self.plane.client_ssl_context
        if ctx is None or self.tls:
            self.write(b"N")
            rest = self.login.take_rest()
            if rest:
                self._login_data(rest)
            return
        self.write(b"S")
        self.transport.pause_reading()
        self._spawn(self._start_tls(ctx))

    async def _start_tls(self, ctx: ssl.SSLContext) -> None:
        loop = asyncio.get_running_loop()
        try:
            transport = await loop.start_tls(self.transport, self, ctx, server_side=True, ssl_handshake_timeout=10.0)
        except (TimeoutError, OSError, ssl.SSLError, ConnectionError):
            self.close()
            return
        self.transport = transport
        self.tls = True

    def _on_startup(self, event: pq.StartupReceived) -> None:
        cfg = self.config
        if cfg.client_tls_sslmode in ("require", "verify-ca", "verify-full") and not self.tls and self.addr != "unix":
            self.fatal("SSL required", "28000")
            return
        if len(self.plane.sessions) > cfg.max_client_conn:
            # Refused after the startup packet (not at accept) so TLS-negotiating clients read the error.
            self.fatal("no more connections allowed (max_client_conn)", "53300")
            return
        for key in event.params:
            # PgBouncer's rule: startup parameters it cannot carry to shared server connections are refused unless
            # listed in ignore_startup_parameters (the tracked ones are re-applied per server with SET).
            if key not in ("user", "database") and key.lower() not in _TRACKED_LOWER and (
                key not in cfg.ignore_startup_parameters
            ):
                self.fatal(f"unsupported startup parameter: {key}", "08P01")
                return
        self.user = event.user
        self.database = event.database
        self.startup_params = dict(event.params)
        if cfg.application_name_add_host:
            self.startup_params["application_name"] = (
                f"{self.startup_params.get('application_name', '')} - {self.addr}:{self.port}"
            )
        if self.database in ADMIN_DATABASES and self.database not in cfg.databases:
            if self.user not in cfg.admin_users and self.user not in cfg.stats_users:
                self.fatal(f'not allowed to connect to admin console as "{self.user}"', "28000")
                return
            self.is_admin = self.user in cfg.admin_users
        elif cfg.database(self.database) is None:
            self.fatal(f'no such database: "{self.database}"', "3D000")
            return
        self.state = AUTH
        if cfg.auth_type != "trust":
            self._spawn(self._authenticate())

    async def _authenticate(self) -> None:
        cfg = self.config
        if cfg.auth_type == "trust":
            await self._login_complete()
            return
        try:
            secret = await self.plane.lookup_secret(self.user, self.database)
        except ServerError as exc:
            self.fatal(f"auth_query failed: {exc}", "28000")
            return
        if secret is None:
            self.fatal(f'password authentication failed for user "{self.user}"', "28P01")
            return
        self.secret = secret
        if cfg.auth_type == "scram-sha-256" and not secret.is_md5:
            keys = secret.scram_keys()
            if keys is None:
                self.fatal(f'password authentication failed for user "{self.user}"', "28P01")
                return
            self._auth = ScramServer(keys)
            self.write(pq.auth_sasl_request())
        else:
            if secret.is_scram:  # an md5 exchange cannot be checked against a SCRAM secret: use SCRAM
                keys = secret.scram_keys()
                assert keys is not None
                self._auth = ScramServer(keys)
                self.write(pq.auth_sasl_request())
                return
            self._salt = os.urandom(4)
            self._auth = "md5"
            self.write(pq.auth_md5_request(self._salt))

    def _on_password(self, data: bytes) -> None:
        auth = self._auth
        failed = f'password authentication failed for user "{self.user}"'
        try:
            if auth == "md5":
                assert self.secret is not None
                if not self.secret.verify_md5(self._salt, data):
                    raise AuthFailed(failed)
                self._auth = None
                self._spawn(self._login_complete())
            elif isinstance(auth, ScramServer):
                if not auth._client_first_bare:
                    mechanism, payload = pq.decode_sasl_initial(data)
                    if mechanism != "SCRAM-SHA-256":
                        raise AuthFailed("unsupported SASL mechanism")
                    self.write(pq.auth_sasl_continue(auth.first(payload)))
                else:
                    final = auth.final(data)
                    self.write(pq.auth_sasl_final(final))
                    keys = auth.keys
                    self.scram_client_keys = ScramKeys(keys.iterations, keys.salt, keys.stored_key, keys.server_key, auth.client_key)
                    self._auth = None
                    self._spawn(self._login_complete())
            else:
                raise AuthFailed("unexpected password message")
        except AuthFailed as exc:
            self.plane.stats_auth_failures += 1
            self.fatal(str(exc) if "failed" in str(exc) else failed, "28P01")
        except pq.ProtocolViolation as exc:
            self.fatal(str(exc), exc.sqlstate)

    async def _login_complete(self) -> None:
        self.state = CONNECTING
        plane = self.plane
        self._cancel_timer("login")
        self.pid, self.key = plane.new_cancel_key(self)
        if self.database in ADMIN_DATABASES and self.database not in self.config.databases:
            self._console = plane.admin_console()
            console_params = {"server_version": "15.0 (nexus-fast)", "client_encoding": "UTF8", "server_encoding": "UTF8",
                      "DateStyle": "ISO, MDY", "standard_conforming_strings": "on", "integer_datetimes": "on",
                      "application_name": self.startup_params.get("application_name", "")}
            self.write(pq.auth_ok() + b"".join(pq.parameter_status(k, v) for k, v in console_params.items())
                       + pq.backend_key_data(self.pid, self.key) + pq.ready_for_query())
            self.state = ADMIN
            if self.inbuf:
                self._admin_pump()
            return
        primary = self._setup_pools()
        params: dict[str, str] | None = primary.server_params
        try:
            # Session mode too borrows the server at the first query (as PgBouncer), so logins never queue.
            if params is None:
                conn = await primary.acquire()
                params = dict(conn.params)
                primary.release(conn)
        except ServerError as exc:
            self.fatal(str(exc), exc.sqlstate)
            return
        self._finish_login(primary, params)

    def _setup_pools(self) -> Pool:
        self.pool_mode, self.single_server, primary_index = self.plane.login_info(self.database, self.user)
        self.track_prepared = self.pool_mode != "session" and self.config.max_prepared_statements > 0
        if self.track_prepared:
            self._slow_flags |= _C_NAMED
        self.route_state = ClientRouteState(self.database, self.user, self.addr, pool_mode=self.pool_mode)
        pool = self.plane.pool_for(self, primary_index)
        self.pools[primary_index] = pool
        return pool

    def _login_fast(self) -> bool:
        """Trust login when the pool already knows the server parameters: no task, no await (pgbench -C)."""
        if self.database in ADMIN_DATABASES and self.database not in self.config.databases:
            return False
        primary = self._setup_pools()
        if primary.server_params is None:
            return False
        self._cancel_timer("login")
        self.pid, self.key = self.plane.new_cancel_key(self)
        self._finish_login(primary, primary.server_params)
        return True

    def _finish_login(self, primary: Pool, params: dict[str, str]) -> None:
        # The greeting (AuthenticationOk + ParameterStatus) depends only on the pool's server parameters and the
        # client's tracked startup parameters: built once per combination.
        wanted = tuple(sorted((k, v) for k, v in self.startup_params.items() if k.lower() in _TRACKED_LOWER))
        cached = primary.greetings.get(wanted)
        if cached is None or cached[0] is not params:
            merged = dict(params)
            for key, value in wanted:
                canon = _TRACKED_LOWER[key.lower()]
                if _norm(merged.get(canon, "")) != _norm(value):
                    merged[canon] = value
            greeting = pq.auth_ok() + b"".join(pq.parameter_status(k, v) for k, v in merged.items())
            sig = tuple(_norm(merged.get(k, "")) for k in TRACKED_PARAMS)
            cached = (params, merged, sig, greeting)
            if len(primary.greetings) < 64:
                primary.greetings[wanted] = cached
        self.params = dict(cached[1])
        self._param_sig = cached[2]
        self.write(cached[3] + pq.backend_key_data(self.pid, self.key) + pq.ready_for_query())
        self.state = READY
        if self._idle_timeouts:
            self._arm_idle(b"I")
        if self.inbuf and not self.waiting:
            self._pump()

    def _signature(self) -> tuple[str, ...]:
        return tuple(_norm(self.params.get(k, "")) for k in TRACKED_PARAMS)

    # ------------------------------------------------------------------ admin console
    def _admin_pump(self) -> None:
        if self.waiting:
            return
        buf = self.inbuf
        try:
            messages, _end = fr.split_messages(buf)
        except ValueError as exc:
            self.fatal(str(exc))
            return
        if not messages:
            return
        kind, start, stop = messages[0]
        body = bytes(buf[start + 5 : stop])
        del buf[:stop]
        if kind == ord("X"):
            self.close()
            return
        if kind != ord("Q"):
            self.fatal("the admin console supports only the simple query protocol", "08P01")
            return
        sql = body.rstrip(b"\x00").decode("utf-8", "replace")
        self.waiting = True
        self._spawn(self._admin_run(sql))

    async def _admin_run(self, sql: str) -> None:
        try:
            if self._console is None:
                out = pq.error_response("admin console not available", "0A000", "ERROR")
            else:
                out = await self._console.execute(sql, self)
        except Exception as exc:  # a broken SHOW must not kill the console session
            log.exception("admin console command failed")
            out = pq.error_response(f"admin command failed: {exc}", "XX000", "ERROR")
        self.write(out + pq.ready_for_query())
        self.waiting = False
        if self.inbuf and self.state == ADMIN:
            self._admin_pump()

    # ------------------------------------------------------------------ routing and lending
    def _first_sql(self, buf: bytearray, end: int) -> str:
        messages, _ = fr.split_messages(buf[:end])
        for kind, start, stop in messages:
            body = bytes(buf[start + 5 : stop])
            if kind in (ord("Q"), ord("P")):
                if kind == ord("P"):
                    _name, pos = pq.read_cstr(body, 0)
                    body = body[pos:]
                return body.split(b"\x00", 1)[0].decode("utf-8", "replace")
            if kind == ord("B"):
                _portal, stmt, _ = pq.decode_bind_names(body)
                known = self.prepared.get(stmt)
                return known[0].decode("utf-8", "replace") if known else ""
        return ""

    def _statement_command(self) -> bool:
        """DEALLOCATE and DISCARD ALL from a client whose statements live on shared servers (transaction mode).

        DEALLOCATE [PREPARE] name|ALL is answered by the proxy (the client's names are forgotten; the server
        copies stay for other clients), as PgBouncer 1.22 does. DISCARD ALL is forwarded and the server connection
        is closed when released, since its prepared statements (which the proxy tracks) are gone.
        Returns True when the first message was answered here.
        """
        buf = self.inbuf
        stop = 1 + int.from_bytes(buf[1:5], "big")
        words = bytes(buf[5 : stop - 1]).decode("utf-8", "replace").strip().rstrip(";").split()
        upper = [w.upper() for w in words]
        if upper[:2] == ["DISCARD", "ALL"] and len(upper) == 2:
            self.prepared.clear()
            self._discard_all = True
            return False
        if not upper or upper[0] != "DEALLOCATE" or self.pending:
            return False
        rest = words[2:] if len(upper) > 1 and upper[1] == "PREPARE" else words[1:]
        if len(rest) != 1:
            return False
        if rest[0].upper() == "ALL":
            self.prepared.clear()
            tag = "DEALLOCATE ALL"
        else:
            name = rest[0]
            if name.startswith('"') and name.endswith('"') and len(name) > 1:
                name = name[1:-1].replace('""', '"')
            if self.prepared.pop(name.encode(), None) is None:
                return False  # not ours to answer: the server reports the missing statement
            tag = "DEALLOCATE"
        del buf[:stop]
        status = self.server.status if self.server is not None else b"I"
        self.write(pq.message(b"C", pq.cstr(tag)) + pq.ready_for_query(status))
        if buf and not self.waiting:
            self._pump()
        return True

    def _answer_locally(self, decision: Any) -> None:
        """CommandComplete tags (or an ErrorResponse) and ReadyForQuery for the first Query, without a server."""
        buf = self.inbuf
        stop = 1 + int.from_bytes(buf[1:5], "big")
        del buf[:stop]
        status = b"T" if self.route_state.in_transaction else b"I"
        if decision.error:
            out = pq.error_response(decision.error, "0A000", "ERROR")
        else:
            out = b"".join(pq.message(b"C", pq.cstr(tag)) for tag in decision.local_reply)
        self.write(out + pq.ready_for_query(status))
        if buf and not self.waiting:
            self._pump()

    def _route_index(self, sql: str) -> int:
        router = self.plane.router_for(self.database)
        decision = router.route(sql, self.route_state)
        return decision.server_index

    def _pool(self, index: int) -> Pool:
        pool = self.pools.get(index)
        if pool is None or pool.closed:
            pool = self.plane.pool_for(self, index)
            self.pools[index] = pool
        return pool

    async def _acquire_routed(self, sql: str) -> tuple[ServerConnection, Pool]:
        index = 0 if self.single_server else self._route_index(sql)
        pool = self._pool(index)
        try:
            return await pool.acquire(), pool
        except ServerError as exc:
            router = self.plane.router_for(self.database)
            on_error = getattr(router, "on_server_error", None)
            if on_error is not None:
                on_error(index, str(exc))
            raise

    def _pump_fresh(self, data: bytes) -> None:
        """The hot path: nothing buffered and ``data`` holds whole messages for a lent or idle connection."""
        try:
            end, syncs, flags, last = _scan_client(data)
        except ValueError as exc:
            self.fatal(f"invalid message from client: {exc}")
            return
        server = self.server
        if end != len(data) or flags & self._slow_flags or (
            self.track_prepared and data[0] == 81 and data[5:6] in (b"D", b"d")  # DEALLOCATE/DISCARD?
        ):
            self.inbuf += data
            self._pump()
            return
        if server is None:
            if not self.single_server:
                self.inbuf += data
                self._pump()
                return
            pool = self.pools.get(0)
            if pool is None or pool.closed:
                pool = self._pool(0)
            server = pool.try_acquire()
            if server is None:
                # Queue at once (what _pump would do after scanning the same bytes again): with more clients
                # than connections this is the common path. Reading continues while waiting (data_received).
                self.inbuf += data
                self.waiting = True
                queue: Pool = pool
                self._waiter = (queue, queue.request(lambda conn, exc: self._on_server_lent(0, queue, conn, exc)))
                return
            self._attach(server, pool)
            now = self.xact_start  # read by _attach just now: the transaction and its first query start together
        else:
            pool = self.server_pool
            now = 0.0
        tracker = server.prepared
        if tracker.parse_queue or tracker.close_queue:
            self.inbuf += data
            self._pump()
            return
        tracker.syncs_sent += syncs
        server.unsynced = last in _UNSYNCED
        if syncs:
            if self.pending == 0:
                self.query_start = now or _monotonic()
                if self._query_timeout:
                    self._timer("query", self._query_timeout, self._on_query_timeout)
            self.pending += syncs
        if pool is not None:
            pool.stats.total_received += end
        server.transport.write(data)

    def _pump(self) -> None:
        """Forward complete client messages to the server lent to this client, borrowing one if needed."""
        buf = self.inbuf
        try:
            end, syncs, flags, last = fr.scan_client(buf)
        except ValueError as exc:
            self.fatal(f"invalid message from client: {exc}")
            return
        if end == 0:
            if len(buf) > (256 << 20) and self.server is None:
                self.fatal("message too large", "54000")
            return
        if flags & fr.C_TERMINATE:
            self._on_terminate(end)
            return
        if flags & fr.C_UNKNOWN:
            self.fatal("invalid frontend message type", "08P01")
            return
        if self.track_prepared and buf[0] == 81 and buf[5:6] in (b"D", b"d") and self._statement_command():
            return
        server = self.server
        if server is None:
            if self.single_server:
                index = 0
            else:
                try:
                    decision = self.plane.router_for(self.database).route(self._first_sql(buf, end), self.route_state)
                except pq.ProtocolViolation as exc:
                    self.fatal(f"invalid message from client: {exc}", exc.sqlstate)
                    return
                except Exception:
                    log.exception("router failed; using the primary")
                    entry = self.config.database(self.database)
                    decision = RouteDecision("primary", entry.server_list().index(entry.primary()) if entry else 0)
                if (getattr(decision, "local_reply", None) is not None or getattr(decision, "error", None)) and (
                    buf[0] == 81  # answered by the proxy only for a simple Query (the router's SET nexus.role)
                ):
                    self._answer_locally(decision)
                    return
                self._decision = decision
                index = decision.server_index
            pool = self._pool(index)
            server = pool.try_acquire()
            if server is None:
                # Reading continues while waiting (a client that hangs up is noticed); data is buffered and
                # reading pauses only if the buffer grows large (data_received).
                self.waiting = True
                self._waiter = (pool, pool.request(lambda conn, exc: self._on_server_lent(index, pool, conn, exc)))
                return
            self._attach(server, pool)
        self._forward(server, end, syncs, flags, last)

    def _on_server_lent(self, index: int, pool: Pool, server: ServerConnection | None, exc: ServerError | None) -> None:
        self._waiter = None
        self.waiting = False
        if server is None:
            router = self.plane.router_for(self.database)
            on_error = getattr(router, "on_server_error", None)
            if on_error is not None and exc is not None and exc.sqlstate != "08P01":
                on_error(index, str(exc))
                # Nothing reached any server yet: a read meant for a replica that cannot be reached is routed
                # again (the router has banned that replica); writes went to the primary and are not retried.
                decision = self._decision
                if decision is not None and decision.role == "replica" and self.state == READY:
                    try:
                        again = router.route(self._first_sql(self.inbuf, len(self.inbuf)), self.route_state)
                    except Exception:
                        again = None
                    if again is not None and again.server_index != index and not getattr(again, "error", None):
                        self._decision = again
                        self.waiting = True
                        new_index, new_pool = again.server_index, self._pool(again.server_index)
                        self._waiter = (new_pool, new_pool.request(
                            lambda conn, err: self._on_server_lent(new_index, new_pool, conn, err)))
                        return
            self.fatal(str(exc) if exc else "no server connection", exc.sqlstate if exc else "08006")
            return
        if self.state == CLOSED:
            pool.release(server)
            return
        self._attach(server, pool)
        if self.paused:
            self.resume_client_reading()
        self._pump()

    def _attach(self, server: ServerConnection, pool: Pool) -> None:
        self.server = server
        self.server_pool = pool
        server.session = self
        self.srv_tail = b""
        self.xact_start = _monotonic()
        # Re-apply the client's tracked parameters on a server that differs (transaction/statement mode).
        sig = self._param_sig
        if server.param_sig is not sig and self.pool_mode != "session" and server.param_sig != sig:
            sets = []
            for key in TRACKED_PARAMS:
                want = self.params.get(key)
                if want is not None and _norm(server.params.get(key, "")) != _norm(want):
                    sets.append(f"SET {key} TO '{want.replace(chr(39), chr(39) * 2)}'")
            server.param_sig = self._param_sig  # after the SETs below, the server matches this client
            if sets:
                server.swallow_ready += 1
                server.prepared.syncs_sent += 1
                if server.prepared.busy:
                    tracker = server.prepared
                    tracker.marks.append((tracker.syncs_sent, tracker.parses_sent, tracker.closes_sent))
                server.write(pq.query(";".join(sets)))

    def _forward(self, server: ServerConnection, end: int, syncs: int, flags: int, last: int) -> None:
        buf = self.inbuf
        server.unsynced = last in _UNSYNCED
        if self._discard_all:
            self._discard_all = False
            server.dirty = True  # its prepared statements are gone: closed when released, not reused
        chunk: bytes | bytearray
        whole = end == len(buf)
        data = bytes(buf) if whole else bytes(memoryview(buf)[:end])
        if whole:
            buf.clear()
        else:
            del buf[:end]
        if self.track_prepared and (flags & (fr.C_PARSE | fr.C_BIND | fr.C_DESCRIBE | fr.C_CLOSE) or server.prepared.busy):
            try:
                chunk = self._rewrite(server, data)
            except pq.ProtocolViolation as exc:
                # Nothing was sent, but the tracker may be half-updated: the server connection is not reused.
                server.dirty = True
                self.fatal(f"invalid message from client: {exc}", exc.sqlstate)
                return
        else:
            chunk = data
            server.prepared.syncs_sent += syncs
        if syncs:
            if self.pending == 0:
                self.query_start = time.monotonic()
                if self.config.query_timeout:
                    self._timer("query", self.config.query_timeout, self._on_query_timeout)
            self.pending += syncs
        pool = self.server_pool
        if pool is not None:
            pool.stats.total_received += end
        server.write(chunk)
        if self.paused and not self.waiting and self.transport is not None:
            self.resume_client_reading()

    def _rewrite(self, server: ServerConnection, data: bytes) -> bytes:
        """Map client statement names to server names; prepare statements the server lacks (module docstring)."""
        tracker = server.prepared
        limit = self.config.max_prepared_statements
        out: list[bytes] = []
        messages, _ = fr.split_messages(data)
        for kind, start, stop in messages:
            if kind == 80:  # 'P' Parse
                msg = pq.decode_parse(data[start + 5 : stop])
                if msg.sql.lstrip()[:10].upper() in (b"DEALLOCATE", b"DISCARD AL"):
                    # Run on the server, it drops the statements the proxy shares there: never reuse this server.
                    server.dirty = True
                    self.prepared.clear()
                if msg.name:
                    server_name = b"nx_" + xxhash.xxh64_hexdigest(msg.sql + b"\x00" + msg.param_types).encode()
                    self.prepared[msg.name] = (msg.sql, msg.param_types, server_name)
                    if server_name in tracker.lru:
                        tracker.lru.move_to_end(server_name)
                        out.append(pq.parse(b"", msg.sql, msg.param_types))  # answers ParseComplete, no clash
                        tracker.parse_queue.append((tracker.parses_sent, None, False))
                    else:
                        self._evict(tracker, limit, out)
                        tracker.lru[server_name] = None
                        out.append(pq.parse(server_name, msg.sql, msg.param_types))
                        tracker.parse_queue.append((tracker.parses_sent, server_name, False))
                else:
                    out.append(data[start:stop])
                    tracker.parse_queue.append((tracker.parses_sent, None, False))
                tracker.parses_sent += 1
            elif kind == 66:  # 'B' Bind
                body = data[start + 5 : stop]
                portal, stmt, rest_at = pq.decode_bind_names(body)
                if stmt and stmt in self.prepared:
                    server_name = self._ensure(tracker, stmt, limit, out)
                    out.append(pq.message(b"B", pq.cstr(portal) + pq.cstr(server_name) + body[rest_at:]))
                else:
                    out.append(data[start:stop])
            elif kind == 68 or kind == 67:  # 'D' Describe / 'C' Close
                target, name = pq.decode_target(data[start + 5 : stop])
                if target == b"S" and name:
                    if kind == 68:
                        if name in self.prepared:
                            server_name = self._ensure(tracker, name, limit, out)
                            out.append(pq.message(b"D", b"S" + pq.cstr(server_name)))
                        else:
                            out.append(data[start:stop])
                    else:
                        # The server copy stays for other clients; the client's name is forgotten.
                        self.prepared.pop(name, None)
                        out.append(pq.close_statement(CLOSED_DUMMY))
                        tracker.close_queue.append((tracker.closes_sent, False))
                        tracker.closes_sent += 1
                else:
                    out.append(data[start:stop])
                    if kind == 67:
                        tracker.close_queue.append((tracker.closes_sent, False))
                        tracker.closes_sent += 1
            else:
                out.append(data[start:stop])
                if kind in (83, 81, 70):  # Sync, Query, FunctionCall: answered by ReadyForQuery
                    tracker.syncs_sent += 1
                    if tracker.busy:
                        tracker.marks.append((tracker.syncs_sent, tracker.parses_sent, tracker.closes_sent))
        return b"".join(out)

    def _ensure(self, tracker: Any, name: bytes, limit: int, out: list[bytes]) -> bytes:
        sql, types, server_name = self.prepared[name]
        if server_name in tracker.lru:
            tracker.lru.move_to_end(server_name)
            return server_name
        self._evict(tracker, limit, out)
        out.append(pq.parse(server_name, sql, types))
        tracker.lru[server_name] = None
        tracker.parse_queue.append((tracker.parses_sent, server_name, True))
        tracker.parses_sent += 1
        return server_name

    def _evict(self, tracker: Any, limit: int, out: list[bytes]) -> None:
        while limit and len(tracker.lru) >= limit:
            old, _ = tracker.lru.popitem(last=False)
            out.append(pq.close_statement(old))
            tracker.close_queue.append((tracker.closes_sent, True))
            tracker.closes_sent += 1

    def _on_terminate(self, end: int) -> None:
        # Forward what precedes Terminate, then close; the server is returned by connection_lost.
        messages, _ = fr.split_messages(self.inbuf[:end])
        before = 0
        for kind, start, _stop in messages:
            if kind == ord("X"):
                before = start
                break
        if before and self.server is not None:
            data = self.inbuf[:before]
            _e, syncs, _f, last = fr.scan_client(data)
            self.inbuf = bytearray(data)
            self._forward(self.server, before, syncs, _f, last)
        self.inbuf.clear()
        self.close()

    # ------------------------------------------------------------------ server data
    def on_server_data(self, data: bytes) -> None:
        """Forward a server buffer; at the ReadyForQuery that ends the client's requests, return the server.

        The hot path of the proxy (one call per server read): kept flat on purpose.
        """
        server = self.server
        if server is None:
            return
        if self.srv_tail:
            data = self.srv_tail + data
            self.srv_tail = b""
        try:
            end, ready, status, flags = _scan_server(data)
        except ValueError:
            server.dirty = True
            self.fatal("server sent an invalid message", "08P01")
            return
        tracker = server.prepared
        if server.swallow_ready or flags & _S_PARAM or (
            (tracker.parse_queue or tracker.close_queue or tracker.marks) and (flags & _S_PC_CC or ready)
        ):
            out, ready, status = self._filter_server(server, data, end)
        else:
            out = data if end == len(data) else data[:end]
            if ready:
                tracker.ready_seen += ready
        if end < len(data):
            self.srv_tail = data[end:]
        pool = self.server_pool
        if out:
            transport = self.transport
            if not transport.is_closing():
                transport.write(out)
            if pool is not None:
                pool.stats.total_sent += len(out)
        if not ready:
            return
        # --- ReadyForQuery seen
        pending = self.pending - ready
        st = _STATUS_BYTES[status]
        server.status = st
        idle = status == 73  # 'I'
        self.route_state.in_transaction = not idle
        if pending > 0:
            self.pending = pending
            return
        self.pending = 0
        now = _monotonic()
        if self._timers:
            self._cancel_timer("query")
        if pool is not None:
            stats = pool.stats
            query_start = self.query_start
            elapsed = now - query_start
            micros = int(elapsed * 1e6)
            bucket = _bisect(_BUCKETS, elapsed)
            stats.total_query_count += 1
            stats.total_query_time += micros
            hist = pool.metrics.query  # BucketHistogram.observe, inlined
            hist.counts[bucket] += 1
            hist.sum += elapsed
            if idle:
                xact_start = self.xact_start
                if xact_start != query_start:
                    # A transaction of several requests; in a one-request transaction (pgbench -S, autocommit)
                    # both clocks are the same reading (_pump_fresh), so is the bucket.
                    elapsed = now - xact_start
                    micros = int(elapsed * 1e6)
                    bucket = _bisect(_BUCKETS, elapsed)
                stats.total_xact_count += 1
                stats.total_xact_time += micros
                hist = pool.metrics.xact
                hist.counts[bucket] += 1
                hist.sum += elapsed
        if idle:
            if self._decision is not None:
                self._route_done(now)
            self.xact_start = now
            if self.pool_mode != "session" and not server.unsynced:
                # _release, inlined (once per transaction), passing the clock reading on
                self.server = None
                server.session = None
                if pool is not None:
                    if self.config.server_reset_query_always and self.config.server_reset_query:
                        self.plane.spawn(self._reset_and_release(server, pool, False))
                    else:
                        pool.release(server, now)
                if self.inbuf and not self.waiting and self.state == READY:
                    self._pump()
        elif self.pool_mode == "statement":
            self.fatal("transaction blocks not allowed in statement pooling mode", "08P01")
            return
        if self._idle_timeouts:
            self._arm_idle(st)

    def _route_done(self, now: float) -> None:
        decision, self._decision = self._decision, None
        done = getattr(self.plane.router_for(self.database), "on_query_done", None)
        if done is not None:
            done(decision, now - self.xact_start)

    def _filter_server(self, server: ServerConnection, data: bytes, end: int) -> tuple[bytes, int, int]:
        tracker = server.prepared
        out: list[bytes] = []
        ready = 0
        status = 0
        messages, _ = fr.split_messages(data, 0)
        for kind, start, stop in messages:
            if kind == 83:  # 'S' ParameterStatus
                body = data[start + 5 : stop]
                name, pos = pq.read_cstr(body, 0)
                value, _ = pq.read_cstr(body, pos)
                key, val = name.decode("utf-8", "replace"), value.decode("utf-8", "replace")
                server.params[key] = val
                server.param_sig = ()
                if self.params.get(key) != val:
                    self.params[key] = val
                    self._param_sig = self._signature()
                if server.swallow_ready:
                    continue
            if server.swallow_ready:
                if kind == 90:
                    server.swallow_ready -= 1
                    server.status = data[start + 5 : start + 6]
                    tracker.ready_seen += 1
                    tracker.reconcile()
                continue
            if kind == 49 and tracker.parse_queue:  # '1' ParseComplete
                _seq, _name, drop = tracker.parse_queue.popleft()
                if drop:
                    continue
            elif kind == 51 and tracker.close_queue:  # '3' CloseComplete
                _seq, drop = tracker.close_queue.popleft()
                if drop:
                    continue
            elif kind == 90:
                tracker.ready_seen += 1
                tracker.reconcile()
                ready += 1
                status = data[start + 5]
            out.append(data[start:stop])
        return b"".join(out), ready, status

    def _release(self) -> None:
        server, pool = self.server, self.server_pool
        self.server = None
        if server is None or pool is None:
            return
        server.session = None
        if self.config.server_reset_query_always and self.config.server_reset_query:
            self.plane.spawn(self._reset_and_release(server, pool, False))
            return
        pool.release(server)

    def _arm_idle(self, status: bytes) -> None:
        cfg = self.config
        if status == b"I":
            if cfg.client_idle_timeout:
                self._timer("idle", cfg.client_idle_timeout, lambda: self.fatal("client_idle_timeout", "08P01"))
        elif cfg.idle_transaction_timeout:
            self._timer("idle", cfg.idle_transaction_timeout, lambda: self.fatal("idle transaction timeout", "25P03"))

    def _on_query_timeout(self) -> None:
        self._timers.pop("query", None)
        server = self.server
        if server is None or self.pending == 0:
            return
        # Cancel on the server (the client then receives the server's 57014 error), as a CancelRequest would.
        self.plane.spawn(self.plane.cancel_server(server))
        self.write(pq.notice_response("query_timeout: cancelling the query on the server", "57014"))

    def on_server_lost(self, server: ServerConnection) -> None:
        if self.server is server:
            self.server = None
            if self.state in (READY, CONNECTING):
                self.fatal(f"server connection lost ({server.close_reason})", "08006")

    def cancel_on_server(self) -> None:
        server = self.server
        if server is not None and not server.closed:
            self.plane.spawn(self.plane.cancel_server(server))

    # ------------------------------------------------------------------ giving servers back
    def _return_dirty(self, server: ServerConnection, pool: Pool) -> None:
        """The client left: make the server clean before anyone else gets it."""
        if self.pending > 0 or server.swallow_ready or server.unsynced:
            # A request is in flight: its state is unknowable without waiting; close it (and stop the query).
            server.dirty = True
            self.plane.spawn(self.plane.cancel_server(server))
            pool.active.discard(server)
            server.close("client left mid-query")
            return
        in_xact = server.status != b"I"
        if self.pool_mode == "session" or in_xact:
            self.plane.spawn(self._reset_and_release(server, pool, in_xact))
        else:
            pool.release(server)

    async def _reset_and_release(self, server: ServerConnection, pool: Pool, rollback: bool) -> None:
        timeout = self.config.connect_timeout or 5.0
        try:
            if rollback or server.status != b"I":
                await server.run_internal("ROLLBACK", timeout)
            if self.pool_mode == "session" or self.config.server_reset_query_always:
                reset = self.config.server_reset_query
                if reset:
                    await server.run_internal(reset, timeout)
                    if "all" in reset.lower():
                        server.prepared.clear()
        except (TimeoutError, ServerError, OSError):
            server.dirty = True
        pool.release(server)


def cancel_packet_key(packet: bytes) -> tuple[int, int]:
    return struct.unpack("!iI", packet[8:16])
