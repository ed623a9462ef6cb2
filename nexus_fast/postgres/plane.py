"""The PostgreSQL data plane: listener, client sessions, routers and pools of one worker process.

``create_plane(config, metrics)`` returns a ``PostgresPlane`` implementing ``nexus_fast.server.plane.Plane``.
Pools are created lazily per (database, user, server index). ``reload`` keeps a pool (and its connections) when
nothing that shapes it changed (its server address, backend login, pool settings); other pools are closed once
their lent connections come back. ``check_health`` really connects to every configured server and runs
``SELECT 1``. ``drain`` waits for clients to finish their transactions before closing them.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import os
import secrets
import ssl
import time
from typing import Any

from prometheus_client.core import HistogramMetricFamily

from nexus_fast.config.schema import NexusConfig
from nexus_fast.observe.metrics import Metrics
from nexus_fast.postgres.auth import Secret, load_auth_file
from nexus_fast.postgres.config import DatabaseEntry, PostgresConfig
from nexus_fast.postgres.pool import Pool
from nexus_fast.postgres.route import make_router
from nexus_fast.postgres.server_conn import (
    ServerConnection,
    ServerError,
    ServerLogin,
    open_server,
    send_cancel,
    set_keepalive,
)
from nexus_fast.postgres.session import ClientSession
from nexus_fast.server.plane import BackendHealth
from nexus_fast.tasks import cancel_and_wait

log = logging.getLogger("nexus_fast.postgres.plane")
AUTH_CACHE_TTL = 30.0  # seconds an auth_query answer is reused


def _client_ssl_context(cfg: PostgresConfig) -> ssl.SSLContext | None:
    if cfg.client_tls_sslmode == "disable" or not cfg.client_tls_cert_file or not cfg.client_tls_key_file:
        return None
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.load_cert_chain(cfg.client_tls_cert_file, cfg.client_tls_key_file)
    if cfg.client_tls_sslmode in ("verify-ca", "verify-full") and cfg.client_tls_ca_file:
        ctx.load_verify_locations(cfg.client_tls_ca_file)
        ctx.verify_mode = ssl.CERT_REQUIRED
    return ctx


def _server_ssl_context(cfg: PostgresConfig) -> ssl.SSLContext | None:
    mode = cfg.server_tls_sslmode
    if mode == "disable":
        return None
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    if mode in ("verify-ca", "verify-full"):
        ctx.load_verify_locations(cfg.server_tls_ca_file)
        ctx.check_hostname = mode == "verify-full"
        ctx.verify_mode = ssl.CERT_REQUIRED
    else:  # allow / prefer / require: encrypted, not authenticated (libpq's meaning)
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    if cfg.server_tls_cert_file and cfg.server_tls_key_file:
        ctx.load_cert_chain(cfg.server_tls_cert_file, cfg.server_tls_key_file)
    return ctx


class PostgresPlane:
    name = "postgres"

    def __init__(self, config: NexusConfig, metrics: Metrics):
        if config.postgres is None:
            raise ValueError("no [postgres] section")
        self.metrics = metrics
        self.sessions: set[ClientSession] = set()
        self.cancel_keys: dict[tuple[int, int], ClientSession] = {}
        self.pools: dict[tuple[str, str, int], Pool] = {}
        self.routers: dict[str, Any] = {}
        self.server: asyncio.Server | None = None
        self.unix_server: asyncio.Server | None = None
        self.stats_auth_failures = 0
        self.started_at = time.time()
        self.paused = False
        self._tasks: set[asyncio.Task[Any]] = set()
        self._maintainer: asyncio.Task[None] | None = None
        self._console: Any = None
        self._apply(config.postgres)
        self._m_clients = metrics.gauge("nexus_postgres_clients", "Client connections by state.", ["state"])
        self._m_servers = metrics.gauge("nexus_postgres_servers", "Server connections by pool and state.", ["database", "user", "server", "state"])
        self._m_bytes = metrics.gauge("nexus_postgres_pool_bytes", "Bytes relayed per pool and direction (cumulative).", ["database", "user", "server", "direction"])
        self._m_counts = metrics.gauge("nexus_postgres_pool_total", "Cumulative per-pool counts (PgBouncer SHOW STATS).", ["database", "user", "server", "what"])
        metrics.registry.register(_PoolHistograms(self))
        self._m_pool_clients = metrics.gauge("nexus_postgres_pool_clients", "Clients per pool: linked to a server (active) or queued for one (waiting).", ["database", "user", "server", "state"])
        self._m_waiting = metrics.gauge("nexus_postgres_clients_waiting", "Clients waiting for a server connection.", ["database", "user", "server"])

    def _apply(self, cfg: PostgresConfig) -> None:
        self.config = cfg
        users: dict[str, str] = {}
        if cfg.auth_file:
            try:
                users.update(load_auth_file(cfg.auth_file))
            except OSError as exc:
                raise ValueError(f"cannot read auth_file {cfg.auth_file}: {exc}") from None
        for name, entry in cfg.users.items():
            if entry.password is not None:
                users[name] = entry.password.get_secret_value()
        self.secrets = {name: Secret(name, text) for name, text in users.items()}
        self._login_infos: dict[tuple[str, str], tuple[str, bool, int]] = {}
        self._auth_cache: dict[tuple[str, str], tuple[float, Secret | None]] = {}
        self.client_ssl_context = _client_ssl_context(cfg)
        self.server_ssl_context = _server_ssl_context(cfg)

    # ------------------------------------------------------------------ Plane contract
    async def start(self) -> None:
        host, port = self.config.listen_address()
        loop = asyncio.get_running_loop()
        self.server = await loop.create_server(
            lambda: ClientSession(self), host, port, reuse_port=True, backlog=4096, start_serving=True
        )
        cfg = self.config
        for sock in self.server.sockets:
            # Accepted sockets inherit these options from the listener on Linux: set once, not per client.
            set_keepalive(sock, cfg.tcp_keepalive, cfg.tcp_keepidle, cfg.tcp_keepintvl, cfg.tcp_keepcnt)
        if self.config.unix_socket_dir:
            # libpq's socket name: <dir>/.s.PGSQL.<port>
            path = os.path.join(self.config.unix_socket_dir, f".s.PGSQL.{port}")
            if os.path.exists(path):
                os.unlink(path)
            self.unix_server = await loop.create_unix_server(lambda: ClientSession(self), path, backlog=4096)
        for name in self.config.databases:
            router = self.router_for(name)
            start = getattr(router, "start", None)
            if start is not None:
                try:
                    await start()
                except Exception:
                    log.exception("router of %s failed to start", name)
        self._maintainer = loop.create_task(self._maintain_loop())
        # The start-up heap (config, pydantic models, prometheus, routers) never changes: freeze it so the cyclic
        # collector never walks it again (the Redis plane measured a 64 ms pause from one full collection; the
        # per-transaction path allocates only reference-counted temporaries).
        gc.freeze()

    @property
    def port(self) -> int:
        assert self.server is not None
        return int(self.server.sockets[0].getsockname()[1])

    async def reload(self, config: NexusConfig) -> None:
        new = config.postgres
        if new is None:
            raise ValueError("reload without a [postgres] section is not supported by a running plane")
        if new.listen != self.config.listen:
            raise ValueError("postgres.listen cannot change on reload (restart the process)")
        old_pools = self.pools
        self._apply(new)
        keep: dict[tuple[str, str, int], Pool] = {}
        for key, pool in old_pools.items():
            database, user, index = key
            entry = new.database(database)
            if entry is not None and index < len(entry.server_list()):
                login = self._login(database, user, index, entry, None)
                settings = new.pool_settings(database, user)
                if _same_login(login, pool.login) and settings == pool.settings:
                    pool.config = new
                    keep[key] = pool
                    continue
            await pool.close("reload")
        self.pools = keep
        old_routers, self.routers = self.routers, {}
        for router in old_routers.values():
            close = getattr(router, "close", None)
            if close is not None:
                await close()
        for name in new.databases:
            start = getattr(self.router_for(name), "start", None)
            if start is not None:
                await start()

    def stop_accepting(self) -> None:
        if self.server is not None:
            self.server.close()
        if self.unix_server is not None:
            self.unix_server.close()

    async def drain(self, timeout: float) -> None:
        """Let clients finish their transactions; close idle ones at once and everyone at the deadline."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for session in list(self.sessions):
                if session.server is None or (session.pool_mode == "session" and session.pending == 0 and (
                    session.server.status == b"I"
                )):
                    if not session.waiting:
                        session.close()
            if not self.sessions:
                break
            await asyncio.sleep(0.05)
        for session in list(self.sessions):
            session.fatal("the proxy is shutting down", "57P01")
        await asyncio.sleep(0)

    async def close(self) -> None:
        self.stop_accepting()
        await cancel_and_wait(self._maintainer)
        for session in list(self.sessions):
            session.close()
        for router in self.routers.values():
            close = getattr(router, "close", None)
            if close is not None:
                try:
                    await close()
                except Exception:
                    log.exception("router close failed")
        for pool in self.pools.values():
            await pool.close()
            for conn in list(pool.active):
                conn.close("plane closed")
        for task in list(self._tasks):
            task.cancel()
        if self.server is not None:
            await self.server.wait_closed()
        if self.unix_server is not None:
            await self.unix_server.wait_closed()
        # Let closed transports release their handles before the caller may close the loop.
        await asyncio.sleep(0.01)

    async def check_health(self, timeout: float) -> list[BackendHealth]:
        probes = []
        for name, entry in self.config.databases.items():
            for index, server in enumerate(entry.server_list()):
                probes.append(self._probe(name, entry, index, server.role, timeout))
        return list(await asyncio.gather(*probes))

    async def _probe(self, name: str, entry: DatabaseEntry, index: int, role: str, timeout: float) -> BackendHealth:
        login = self._login(name, self._probe_user(entry), index, entry, None)
        address = f"{login.host}:{login.port}"
        start = time.monotonic()
        conn: ServerConnection | None = None
        try:
            conn = await asyncio.wait_for(open_server(login), timeout)
            await conn.run_internal("SELECT 1", timeout)
        except (TimeoutError, OSError, ServerError, EOFError) as exc:
            reason = "timeout" if isinstance(exc, asyncio.TimeoutError) else str(exc) or type(exc).__name__
            return BackendHealth("postgres", f"{name}/{role}", address, False, reason)
        finally:
            if conn is not None:
                conn.close("health probe done")
        return BackendHealth("postgres", f"{name}/{role}", address, True, "", (time.monotonic() - start) * 1000)

    def _probe_user(self, entry: DatabaseEntry) -> str:
        return entry.user or self.config.auth_user or next(iter(self.config.users), "postgres")

    # ------------------------------------------------------------------ sessions' services
    def spawn(self, coro: Any) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def new_cancel_key(self, session: ClientSession) -> tuple[int, int]:
        while True:
            key = (int.from_bytes(os.urandom(4), "big") & 0x7FFFFFFF or 1, secrets.randbits(32))
            if key not in self.cancel_keys:
                self.cancel_keys[key] = session
                return key

    def cancel_from_client(self, pid: int, key: int) -> None:
        session = self.cancel_keys.get((pid, key))
        if session is not None:
            session.cancel_on_server()

    async def cancel_server(self, server: ServerConnection) -> None:
        await send_cancel(server.login.host, server.login.port, server.pid, server.key, self.config.connect_timeout or 5.0)

    def router_for(self, database: str) -> Any:
        router = self.routers.get(database)
        if router is None:
            entry = self.config.database(database) or DatabaseEntry()
            router = make_router(database, entry, self.config, self.metrics)
            self.routers[database] = router
        return router

    def admin_console(self) -> Any:
        if self._console is None:
            try:
                from nexus_fast.postgres.admin_console import AdminConsole  # the routing engineer's module

                self._console = AdminConsole(self)
            except ImportError:
                return None
        return self._console

    def _login(self, database: str, user: str, index: int, entry: DatabaseEntry, session: ClientSession | None) -> ServerLogin:
        cfg = self.config
        server = entry.server_list()[index]
        backend_user = entry.user or user
        password = md5_hex = None
        scram = None
        if entry.user:
            password = entry.password.get_secret_value() if entry.password is not None else None
        else:
            secret = self.secrets.get(user)
            if secret is None and session is not None:
                secret = session.secret
            if secret is not None:
                if secret.is_plain:
                    password = secret.text
                elif secret.is_md5:
                    md5_hex = secret.text[3:]
            if session is not None and session.scram_client_keys is not None:
                scram = session.scram_client_keys
        return ServerLogin(
            host=server.host, port=server.port, user=backend_user, database=entry.backend_dbname(database),
            password=password, md5_hex=md5_hex, scram_keys=scram, params={},
            sslmode=cfg.server_tls_sslmode, ssl_context=self.server_ssl_context, keepalive=cfg.tcp_keepalive,
        )

    def pool_for(self, session: ClientSession, index: int) -> Pool:
        key = (session.database, session.user, index)
        pool = self.pools.get(key)
        if pool is None or pool.closed:
            entry = self.config.database(session.database)
            assert entry is not None
            login = self._login(session.database, session.user, index, entry, session)
            settings = self.config.pool_settings(session.database, session.user)
            database, user = session.database, session.user
            user_entry = self.config.users.get(user)
            pool = Pool(database, user, index, entry.server_list()[index].role, login, settings, self.config,
                        self.metrics, db_counter=lambda: self._db_connections(database),
                        user_counter=lambda: self._user_connections(user),
                        max_user_connections=user_entry.max_user_connections if user_entry else 0,
                        connect_query=entry.connect_query)
            pool.paused = self.paused
            # Server parameters are the server's, not the user's: a new pool reuses a sibling's, so a login does
            # not need a server connection of its own (which max_db_connections may not allow yet).
            for (db, _user, idx), sibling in self.pools.items():
                if db == database and idx == index and sibling.server_params is not None:
                    pool.server_params = dict(sibling.server_params)
                    break
            self.pools[key] = pool
        elif pool.login.scram_keys is None and session.scram_client_keys is not None and pool.login.password is None:
            pool.login.scram_keys = session.scram_client_keys
        return pool

    def login_info(self, database: str, user: str) -> tuple[str, bool, int]:
        """(pool_mode, single_server, primary index) of a client's (database, user), cached until reload."""
        info = self._login_infos.get((database, user))
        if info is None:
            entry = self.config.database(database)
            assert entry is not None
            servers = entry.server_list()
            info = (self.config.pool_settings(database, user).pool_mode, len(servers) == 1,
                    servers.index(entry.primary()))
            if len(self._login_infos) < 10000:
                self._login_infos[(database, user)] = info
        return info

    def _user_connections(self, user: str) -> int:
        return sum(p.size() for (_db, u, _i), p in self.pools.items() if u == user)

    def _db_connections(self, database: str) -> int:
        return sum(p.size() for (db, _u, _i), p in self.pools.items() if db == database)

    async def lookup_secret(self, user: str, database: str) -> Secret | None:
        """The user's secret: TOML users and auth_file first, then auth_query run as auth_user."""
        secret = self.secrets.get(user)
        if secret is not None or not self.config.auth_user:
            return secret
        cached = self._auth_cache.get((user, database))
        if cached is not None and cached[0] > time.monotonic():
            return cached[1]
        secret = await self._auth_query(user, database)
        if len(self._auth_cache) > 10000:
            self._auth_cache.clear()
        # Kept briefly so connection-per-transaction clients do not cost a backend login each (PgBouncer keeps
        # auth_query results for the life of the pool); a changed password is seen within AUTH_CACHE_TTL.
        self._auth_cache[(user, database)] = (time.monotonic() + AUTH_CACHE_TTL, secret)
        return secret

    async def _auth_query(self, user: str, database: str) -> Secret | None:
        entry = self.config.database(database)
        auth_user = self.config.auth_user
        if entry is None or not auth_user:
            return None
        login = self._login(database, auth_user, entry.server_list().index(entry.primary()), entry, None)
        login.user = auth_user
        if self.config.auth_password is not None:
            login.password = self.config.auth_password.get_secret_value()
        elif auth_user in self.secrets:
            s = self.secrets[auth_user]
            login.password = s.text if s.is_plain else None
            login.md5_hex = s.text[3:] if s.is_md5 else None
        literal = "'" + user.replace("'", "''") + "'"
        sql = self.config.auth_query.replace("$1", literal)
        conn = await asyncio.wait_for(open_server(login), self.config.connect_timeout or 5.0)
        try:
            messages = await conn.run_internal(sql, self.config.connect_timeout or 5.0)
        finally:
            conn.close("auth_query done")
        for kind, body in messages:
            if kind == b"D":
                n = int.from_bytes(body[:2], "big")
                pos = 2
                values: list[bytes | None] = []
                for _ in range(n):
                    length = int.from_bytes(body[pos : pos + 4], "big", signed=True)
                    pos += 4
                    if length < 0:
                        values.append(None)
                    else:
                        values.append(body[pos : pos + length])
                        pos += length
                if len(values) >= 2 and values[1] is not None:
                    return Secret(user, values[1].decode())
        return None

    # ------------------------------------------------------------------ admin operations (for the console)
    def pause(self) -> None:
        self.paused = True
        for pool in self.pools.values():
            pool.paused = True

    def resume(self) -> None:
        self.paused = False
        for pool in self.pools.values():
            pool.paused = False
            while pool.idle and pool.waiters:
                conn = pool.idle.pop()
                pool.active.add(conn)
                pool.release(conn)

    # ------------------------------------------------------------------ housekeeping
    async def _maintain_loop(self) -> None:
        while True:
            await asyncio.sleep(1.0)
            for pool in list(self.pools.values()):
                try:
                    await pool.maintain()
                except Exception:
                    log.exception("pool maintenance failed")
            self._export()

    def _export(self) -> None:
        active = sum(1 for s in self.sessions if s.server is not None)
        waiting = sum(1 for s in self.sessions if s.waiting)
        self._m_clients.labels("active").set(active)
        self._m_clients.labels("waiting").set(waiting)
        self._m_clients.labels("idle").set(len(self.sessions) - active - waiting)
        # PgBouncer's cl_active: clients linked to a server, or logged in and idle (counted on the primary pool).
        linked: dict[int, int] = {}
        for session in self.sessions:
            pool: Pool | None
            if session.server is not None and session.server_pool is not None:
                pool = session.server_pool
            elif not session.waiting and session.pools:
                pool = session.pools.get(self.login_info(session.database, session.user)[2])
            else:
                pool = None
            if pool is not None:
                linked[id(pool)] = linked.get(id(pool), 0) + 1
        for pool in list(self.pools.values()):
            st = pool.refresh_stats()
            st.cl_active = linked.get(id(pool), 0)
            labels = (pool.name, pool.user, st.server)
            self._m_pool_clients.labels(*labels, "active").set(st.cl_active)
            self._m_pool_clients.labels(*labels, "waiting").set(st.cl_waiting)
            self._m_servers.labels(*labels, "active").set(st.sv_active)
            self._m_servers.labels(*labels, "idle").set(st.sv_idle)
            self._m_servers.labels(*labels, "login").set(st.sv_login)
            self._m_waiting.labels(*labels).set(st.cl_waiting)
            self._m_bytes.labels(*labels, "received").set(st.total_received)
            self._m_bytes.labels(*labels, "sent").set(st.total_sent)
            for what in ("total_xact_count", "total_query_count", "total_wait_time", "servers_closed_dead",
                         "servers_replaced", "connect_failures", "connect_retries", "wait_timeouts"):
                self._m_counts.labels(*labels, what).set(getattr(st, what))


class _PoolHistograms:
    """Prometheus collector for the pools' latency histograms (kept as plain counters on the request path)."""

    _FAMILIES = (
        ("nexus_postgres_pool_wait_seconds", "Time clients waited for a server connection.", "wait"),
        ("nexus_postgres_transaction_seconds", "Transaction latency seen by the proxy (first query to release).", "xact"),
        ("nexus_postgres_query_seconds", "Request latency (query or Sync to ReadyForQuery).", "query"),
    )

    def __init__(self, plane: PostgresPlane):
        self.plane = plane

    def describe(self) -> list[Any]:
        return [HistogramMetricFamily(name, doc, labels=["database", "user", "server"]) for name, doc, _ in self._FAMILIES]

    def collect(self) -> Any:
        for name, doc, attr in self._FAMILIES:
            family = HistogramMetricFamily(name, doc, labels=["database", "user", "server"])
            for pool in list(self.plane.pools.values()):
                hist = getattr(pool.metrics, attr)
                family.add_metric([pool.name, pool.user, pool.stats.server], hist.buckets(), hist.sum)
            yield family


def _same_login(a: ServerLogin, b: ServerLogin) -> bool:
    return (a.host, a.port, a.user, a.database, a.password, a.md5_hex, a.sslmode) == (
        b.host, b.port, b.user, b.database, b.password, b.md5_hex, b.sslmode
    )


def create_plane(config: NexusConfig, metrics: Metrics) -> PostgresPlane:
    return PostgresPlane(config, metrics)
