"""The admin console: database ``pgbouncer`` (alias ``nexus``), answering PgBouncer's commands with its columns.

Tools written for PgBouncer (psql habits, ``pgbouncer_exporter``, dashboards, runbooks) connect to the admin
database and send ``SHOW POOLS``, ``SHOW STATS`` ... over the simple query protocol. They address columns by name
and some check types, so every ``SHOW`` here returns the column names, order and type OIDs of PgBouncer 1.18
(the version Debian 12 ships, checked against a running PgBouncer by ``tests/integration/postgres_routing/
test_pg_admin_console.py``): ``text`` (25), ``int4`` (23), ``int8`` (20) and ``numeric`` (1700). Reference:
PgBouncer's usage documentation, "Admin console" (https://www.pgbouncer.org/usage.html#admin-console).

Commands:
- ``SHOW POOLS | STATS | STATS_TOTALS | STATS_AVERAGES | TOTALS | CLIENTS | SERVERS | DATABASES | USERS | CONFIG |
  VERSION | LISTS | HELP`` for ``admin_users`` and ``stats_users``; plus ``SHOW ROUTING`` (ours: each server of each
  database with its role, whether it takes reads, replica lag and ban reason).
- ``PAUSE [db]`` (waits until the servers' transactions end, then closes them; new work waits), ``RESUME [db]``,
  ``RELOAD``, ``KILL db`` (drops the database's clients and servers at once and pauses it), ``SHUTDOWN`` for
  ``admin_users`` only; others get PgBouncer's "admin access needed".

Pools: PgBouncer keeps one pool per (database, user); nexus-fast keeps one per (database, user, server) so a
database with replicas has several. ``SHOW POOLS`` / ``SHOW STATS`` add them up per (database, user) / database, as
exporters key their series on those labels and would reject duplicates; ``SHOW SERVERS`` and ``SHOW ROUTING``
show the per-server detail.

``RELOAD`` and ``SHUTDOWN`` act on the process: if the plane carries ``admin_reload`` / ``admin_shutdown`` hooks
(async callables; tests and embedders set them) those run; otherwise the console signals the nexus-fast supervisor
(SIGHUP / SIGTERM to the parent when the parent is nexus-fast, which reloads or drains every worker) or its own
worker, and refuses when no handler is installed, so it can never kill a host process that did not ask for it.

Encoding is sans-IO (:func:`encode_result`): values in, RowDescription + DataRow... + CommandComplete bytes out;
the session appends ReadyForQuery.
"""

from __future__ import annotations

import asyncio
import os
import signal
import struct
import time
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, SecretStr

from nexus_fast.postgres import protocol as pq

VERSION = "0.1.0"
PGBOUNCER_COMPAT = "1.18.0"
# Exporters parse "PgBouncer x.y.z" out of SHOW VERSION to pick the columns they expect.
VERSION_TEXT = f"PgBouncer {PGBOUNCER_COMPAT} compatible (nexus-fast {VERSION})"

# Type OIDs and sizes (pg_type.oid, typlen) used by PgBouncer's admin console.
TEXT = (25, -1)
INT4 = (23, 4)
INT8 = (20, 8)
NUMERIC = (1700, -1)

Column = tuple[str, tuple[int, int]]

POOLS_COLUMNS: list[Column] = [
    ("database", TEXT), ("user", TEXT), ("cl_active", INT4), ("cl_waiting", INT4), ("cl_active_cancel_req", INT4),
    ("cl_waiting_cancel_req", INT4), ("sv_active", INT4), ("sv_active_cancel", INT4), ("sv_being_canceled", INT4),
    ("sv_idle", INT4), ("sv_used", INT4), ("sv_tested", INT4), ("sv_login", INT4), ("maxwait", INT4),
    ("maxwait_us", INT4), ("pool_mode", TEXT),
]
STATS_COLUMNS: list[Column] = [
    ("database", TEXT), ("total_xact_count", NUMERIC), ("total_query_count", NUMERIC),
    ("total_received", NUMERIC), ("total_sent", NUMERIC), ("total_xact_time", NUMERIC),
    ("total_query_time", NUMERIC), ("total_wait_time", NUMERIC), ("avg_xact_count", NUMERIC),
    ("avg_query_count", NUMERIC), ("avg_recv", NUMERIC), ("avg_sent", NUMERIC), ("avg_xact_time", NUMERIC),
    ("avg_query_time", NUMERIC), ("avg_wait_time", NUMERIC),
]
STATS_PART_COLUMNS: list[Column] = [
    ("database", TEXT), ("xact_count", NUMERIC), ("query_count", NUMERIC), ("bytes_received", NUMERIC),
    ("bytes_sent", NUMERIC), ("xact_time", NUMERIC), ("query_time", NUMERIC), ("wait_time", NUMERIC),
]
SOCKET_COLUMNS: list[Column] = [
    ("type", TEXT), ("user", TEXT), ("database", TEXT), ("state", TEXT), ("addr", TEXT), ("port", INT4),
    ("local_addr", TEXT), ("local_port", INT4), ("connect_time", TEXT), ("request_time", TEXT), ("wait", INT4),
    ("wait_us", INT4), ("close_needed", INT4), ("ptr", TEXT), ("link", TEXT), ("remote_pid", INT4), ("tls", TEXT),
    ("application_name", TEXT),
]
DATABASES_COLUMNS: list[Column] = [
    ("name", TEXT), ("host", TEXT), ("port", INT4), ("database", TEXT), ("force_user", TEXT), ("pool_size", INT4),
    ("min_pool_size", INT4), ("reserve_pool", INT4), ("pool_mode", TEXT), ("max_connections", INT4),
    ("current_connections", INT4), ("paused", INT4), ("disabled", INT4),
]
USERS_COLUMNS: list[Column] = [("name", TEXT), ("pool_mode", TEXT)]
CONFIG_COLUMNS: list[Column] = [("key", TEXT), ("value", TEXT), ("default", TEXT), ("changeable", TEXT)]
VERSION_COLUMNS: list[Column] = [("version", TEXT)]
LISTS_COLUMNS: list[Column] = [("list", TEXT), ("items", INT4)]
TOTALS_COLUMNS: list[Column] = [("name", TEXT), ("value", NUMERIC)]
ROUTING_COLUMNS: list[Column] = [
    ("database", TEXT), ("server", INT4), ("host", TEXT), ("port", INT4), ("role", TEXT), ("available", INT4),
    ("lag_s", NUMERIC), ("reason", TEXT), ("reads_routed", INT8), ("load_balancing", TEXT),
]

SHOW_HELP = """Console usage
\tSHOW HELP|CONFIG|DATABASES|POOLS|CLIENTS|SERVERS|USERS|VERSION
\tSHOW STATS|STATS_TOTALS|STATS_AVERAGES|TOTALS|LISTS
\tSHOW ROUTING
\tPAUSE [<db>]
\tRESUME [<db>]
\tKILL <db>
\tRELOAD
\tSHUTDOWN"""

ADMIN_DB = "pgbouncer"


# ---------------------------------------------------------------------------------------------------------------
# Sans-IO encoding (PostgreSQL protocol, section 55.7 "Message Formats")
# ---------------------------------------------------------------------------------------------------------------
def row_description(columns: Sequence[Column]) -> bytes:
    parts = [struct.pack("!h", len(columns))]
    for name, (oid, size) in columns:
        # name, table OID 0, column number 0, type OID, type size, type modifier -1, format 0 (text)
        parts.append(pq.cstr(name) + struct.pack("!ihihih", 0, 0, oid, size, -1, 0))
    return pq.message(b"T", b"".join(parts))


def _text(value: Any) -> bytes | None:
    if value is None:
        return None
    if isinstance(value, bool):
        return b"1" if value else b"0"
    if isinstance(value, float):
        return (f"{value:.6f}".rstrip("0").rstrip(".") or "0").encode()
    return str(value).encode()


def data_row(values: Sequence[Any]) -> bytes:
    parts = [struct.pack("!h", len(values))]
    for value in values:
        encoded = _text(value)
        if encoded is None:
            parts.append(struct.pack("!i", -1))
        else:
            parts.append(struct.pack("!i", len(encoded)) + encoded)
    return pq.message(b"D", b"".join(parts))


def command_complete(tag: str) -> bytes:
    return pq.message(b"C", pq.cstr(tag))


def encode_result(columns: Sequence[Column], rows: Iterable[Sequence[Any]], tag: str = "SHOW") -> bytes:
    """RowDescription, one DataRow per row, CommandComplete: what PgBouncer sends for a SHOW."""
    out = [row_description(columns)]
    out.extend(data_row(row) for row in rows)
    out.append(command_complete(tag))
    return b"".join(out)


def error(message: str, sqlstate: str = "08P01") -> bytes:
    return pq.error_response(message, sqlstate, "ERROR")


def notice(message: str) -> bytes:
    return pq.notice_response(message, "00000", "NOTICE")


def pgbouncer_time(wall: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(wall))


def split_wait(seconds: float) -> tuple[int, int]:
    """PgBouncer's (maxwait, maxwait_us): whole seconds and the microsecond remainder."""
    micros = max(0, int(seconds * 1_000_000))
    return micros // 1_000_000, micros % 1_000_000


def parse_command(sql: str) -> tuple[str, list[str]]:
    """``"show pools;"`` -> ("SHOW", ["POOLS"]); words upper-cased except arguments after the verb's object."""
    text = sql.strip().rstrip(";").strip()
    words = text.split()
    if not words:
        return "", []
    return words[0].upper(), words[1:]


# ---------------------------------------------------------------------------------------------------------------
@dataclass
class _Totals:
    xact_count: int = 0
    query_count: int = 0
    received: int = 0
    sent: int = 0
    xact_time: int = 0
    query_time: int = 0
    wait_time: int = 0

    def add(self, stats: Any) -> None:
        self.xact_count += stats.total_xact_count
        self.query_count += stats.total_query_count
        self.received += stats.total_received
        self.sent += stats.total_sent
        self.xact_time += stats.total_xact_time
        self.query_time += stats.total_query_time
        self.wait_time += stats.total_wait_time

    def minus(self, other: _Totals) -> _Totals:
        return _Totals(*(max(0, a - b) for a, b in zip(self.as_tuple(), other.as_tuple(), strict=True)))

    def as_tuple(self) -> tuple[int, ...]:
        return (self.xact_count, self.query_count, self.received, self.sent, self.xact_time, self.query_time,
                self.wait_time)


class AdminConsole:
    """Answers admin-console queries for one plane (see the module docstring)."""

    def __init__(self, plane: Any, clock: Callable[[], float] = time.time) -> None:
        self.plane = plane
        self.clock = clock
        self.started = clock()
        # (time, totals per database) samples for the stats_period averages.
        self._samples: list[tuple[float, dict[str, _Totals]]] = [(self.started, {})]
        self._paused_dbs: set[str] = set()

    @property
    def config(self) -> Any:
        return self.plane.config

    # -- entry point (the session's seam) ------------------------------------------------------------------------
    async def execute(self, sql: str, session: Any) -> bytes:
        verb, args = parse_command(sql)
        is_admin = bool(getattr(session, "is_admin", False))
        if verb == "SHOW" and args:
            handler = getattr(self, f"show_{args[0].lower()}", None)
            if handler is not None and args[0].isidentifier():
                result: bytes = handler(session)
                return result
        elif verb in ("PAUSE", "RESUME", "RELOAD", "KILL", "SHUTDOWN"):
            if not is_admin:
                return error("admin access needed", "42501")
            return await getattr(self, f"cmd_{verb.lower()}")(args, session)
        if verb == "SET" and not is_admin:
            return error("admin access needed", "42501")
        return error(f"invalid command '{sql.strip().rstrip(';')}', use SHOW HELP;")

    # -- pools and stats -------------------------------------------------------------------------------------------
    def _pools(self) -> list[Any]:
        return list(getattr(self.plane, "pools", {}).values())

    def _sessions(self) -> list[Any]:
        return list(getattr(self.plane, "sessions", ()))

    def show_pools(self, session: Any) -> bytes:
        rows: dict[tuple[str, str], list[Any]] = {}
        waits: dict[tuple[str, str], float] = defaultdict(float)
        for pool in self._pools():
            st = pool.refresh_stats()
            key = (pool.name, pool.user)
            row = rows.setdefault(key, [pool.name, pool.user, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
                                        st.pool_mode])
            row[6] += st.sv_active
            row[9] += st.sv_idle
            row[10] += st.sv_used
            row[11] += st.sv_tested
            row[12] += st.sv_login
            waits[key] = max(waits[key], st.maxwait_us / 1e6)
        admin_clients = 0
        for client in self._sessions():
            if getattr(client, "_console", None) is not None:
                admin_clients += 1
                continue
            key = (client.database, client.user)
            if key in rows:
                rows[key][3 if client.waiting else 2] += 1
        out = [[ADMIN_DB, ADMIN_DB, admin_clients, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, "statement"]]
        for key in sorted(rows):
            row = rows[key]
            row[13], row[14] = split_wait(waits[key])
            out.append(row)
        return encode_result(POOLS_COLUMNS, out)

    def _totals(self) -> dict[str, _Totals]:
        totals: dict[str, _Totals] = defaultdict(_Totals)
        totals[ADMIN_DB]  # PgBouncer lists its own admin database too
        for pool in self._pools():
            totals[pool.name].add(pool.stats)
        return dict(totals)

    def _averages(self, now: float, totals: dict[str, _Totals]) -> dict[str, tuple[float, ...]]:
        """Per-second rates (counts, bytes) and per-transaction/query times over the last stats_period."""
        # As PgBouncer, averages cover a whole stats_period: the window from the newest sample at least one period
        # old up to now. Until a period has passed there is no such window and the averages are 0.
        period = float(getattr(self.config, "stats_period", 60.0)) or 60.0
        base: dict[str, _Totals] | None = None
        base_time = now
        for sample_time, sample in self._samples:
            if now - sample_time >= period:
                base_time, base = sample_time, sample
        if now - self._samples[-1][0] >= min(1.0, period / 4):
            self._samples.append((now, {db: _Totals(*t.as_tuple()) for db, t in totals.items()}))
        keep = [s for s in self._samples if now - s[0] < period]
        older = [s for s in self._samples if now - s[0] >= period]
        self._samples = older[-1:] + keep
        elapsed = max(now - base_time, 1e-9)
        out: dict[str, tuple[float, ...]] = {}
        for db, cur in totals.items():
            if base is None:
                out[db] = (0, 0, 0, 0, 0, 0, 0)
                continue
            d = cur.minus(base.get(db, _Totals()))
            out[db] = (
                int(d.xact_count / elapsed), int(d.query_count / elapsed), int(d.received / elapsed),
                int(d.sent / elapsed), int(d.xact_time / d.xact_count) if d.xact_count else 0,
                int(d.query_time / d.query_count) if d.query_count else 0,
                int(d.wait_time / d.xact_count) if d.xact_count else 0,
            )
        return out

    def show_stats(self, session: Any) -> bytes:
        totals = self._totals()
        averages = self._averages(self.clock(), totals)
        rows = [[db, *totals[db].as_tuple(), *averages[db]] for db in sorted(totals)]
        return encode_result(STATS_COLUMNS, rows)

    def show_stats_totals(self, session: Any) -> bytes:
        totals = self._totals()
        return encode_result(STATS_PART_COLUMNS, [[db, *totals[db].as_tuple()] for db in sorted(totals)])

    def show_stats_averages(self, session: Any) -> bytes:
        totals = self._totals()
        averages = self._averages(self.clock(), totals)
        return encode_result(STATS_PART_COLUMNS, [[db, *averages[db]] for db in sorted(totals)])

    def show_totals(self, session: Any) -> bytes:
        total = _Totals()
        for db_totals in self._totals().values():
            for name, value in zip(("xact_count", "query_count", "received", "sent", "xact_time", "query_time",
                                    "wait_time"), db_totals.as_tuple(), strict=True):
                setattr(total, name, getattr(total, name) + value)
        names = ("total_xact_count", "total_query_count", "total_received", "total_sent", "total_xact_time",
                 "total_query_time", "total_wait_time")
        return encode_result(TOTALS_COLUMNS, list(zip(names, total.as_tuple(), strict=True)))

    # -- clients and servers ---------------------------------------------------------------------------------------
    def show_clients(self, session: Any) -> bytes:
        now = self.clock()
        rows = []
        for client in sorted(self._sessions(), key=lambda s: getattr(s, "id", 0)):
            rows.append(self._client_row(client, now))
        return encode_result(SOCKET_COLUMNS, rows)

    def _client_row(self, client: Any, now: float) -> list[Any]:
        is_console = getattr(client, "_console", None) is not None
        # A console client is "waiting" only on its own command; PgBouncer lists admin clients as active.
        state = "waiting" if getattr(client, "waiting", False) and not is_console else "active"
        if getattr(client, "state", None) in (0, 1, 2):  # LOGIN, AUTH, CONNECTING (nexus_fast.postgres.session)
            state = "login"
        local_addr, local_port = _sockname(getattr(client, "transport", None))
        waited = now - client.request_time if state == "waiting" else 0.0
        wait_s, wait_us = split_wait(waited)
        server = getattr(client, "server", None)
        database = ADMIN_DB if is_console else client.database
        app = getattr(client, "startup_params", {}).get("application_name", "")
        return [
            "C", client.user, database, state, client.addr, client.port, local_addr, local_port,
            pgbouncer_time(client.connect_time), pgbouncer_time(client.request_time), wait_s, wait_us, 0,
            _ptr(client), _ptr(server) if server is not None else "", 0, "TLS" if getattr(client, "tls", False) else "",
            app,
        ]

    def show_servers(self, session: Any) -> bytes:
        now_wall, now_mono = self.clock(), time.monotonic()
        rows = []
        delay = float(getattr(self.config, "server_check_delay", 0.0))
        for pool in self._pools():
            for conn in pool.servers():
                if conn in pool.active:
                    state = "active"
                elif delay and now_mono - conn.last_used > delay:
                    state = "used"
                else:
                    state = "idle"
                local_addr, local_port = _sockname(getattr(conn, "transport", None))
                client = getattr(conn, "session", None)
                app = client.startup_params.get("application_name", "") if client is not None else ""
                rows.append([
                    "S", conn.login.user, pool.name, state, conn.login.host, conn.login.port, local_addr, local_port,
                    pgbouncer_time(now_wall - (now_mono - conn.created_at)),
                    pgbouncer_time(now_wall - (now_mono - conn.last_used)), 0, 0, 0, _ptr(conn),
                    _ptr(client) if client is not None else "", conn.pid, "", app,
                ])
        return encode_result(SOCKET_COLUMNS, rows)

    # -- configuration views ------------------------------------------------------------------------------------------
    def show_databases(self, session: Any) -> bytes:
        cfg = self.config
        _host, port = cfg.listen_address()
        current: dict[str, int] = defaultdict(int)
        for pool in self._pools():
            current[pool.name] += pool.size()
        plane_paused = bool(getattr(self.plane, "paused", False))
        rows: list[list[Any]] = [[ADMIN_DB, None, port, ADMIN_DB, ADMIN_DB, 2, 0, 0, "statement", 0, 0, 0, 0]]
        for name in sorted(cfg.databases):
            entry = cfg.databases[name]
            primary = entry.primary()
            rows.append([
                name, primary.host, primary.port, entry.backend_dbname(name), entry.user,
                entry.pool_size if entry.pool_size is not None else cfg.default_pool_size,
                entry.min_pool_size if entry.min_pool_size is not None else cfg.min_pool_size,
                entry.reserve_pool_size if entry.reserve_pool_size is not None else cfg.reserve_pool_size,
                entry.pool_mode,
                entry.max_db_connections if entry.max_db_connections is not None else cfg.max_db_connections,
                current.get(name, 0), int(plane_paused or name in self._paused_dbs), 0,
            ])
        return encode_result(DATABASES_COLUMNS, rows)

    def show_users(self, session: Any) -> bytes:
        names = {ADMIN_DB}
        names.update(self.config.users)
        names.update(getattr(self.plane, "secrets", {}) or {})
        rows = []
        for name in sorted(names):
            entry = self.config.users.get(name)
            rows.append([name, entry.pool_mode if entry is not None else None])
        return encode_result(USERS_COLUMNS, rows)

    def show_config(self, session: Any) -> bytes:
        return encode_result(CONFIG_COLUMNS, config_rows(self.config))

    def show_version(self, session: Any) -> bytes:
        return encode_result(VERSION_COLUMNS, [[VERSION_TEXT]])

    def show_lists(self, session: Any) -> bytes:
        sessions = self._sessions()
        used_clients = sum(1 for s in sessions if getattr(s, "state", 3) not in (0, 1, 2))
        login_clients = len(sessions) - used_clients
        servers = sum(len(p.servers()) for p in self._pools())
        users = {ADMIN_DB, *self.config.users, *(getattr(self.plane, "secrets", {}) or {})}
        rows = [
            ("databases", len(self.config.databases) + 1), ("users", len(users)), ("pools", len(self._pools()) + 1),
            ("free_clients", 0), ("used_clients", used_clients), ("login_clients", login_clients),
            ("free_servers", 0), ("used_servers", servers), ("dns_names", 0), ("dns_zones", 0),
            ("dns_queries", 0), ("dns_pending", 0),
        ]
        return encode_result(LISTS_COLUMNS, rows)

    def show_help(self, session: Any) -> bytes:
        return notice(SHOW_HELP) + command_complete("SHOW")

    def show_routing(self, session: Any) -> bytes:
        rows = []
        routers = getattr(self.plane, "routers", {})
        for name in sorted(self.config.databases):
            entry = self.config.databases[name]
            router = routers.get(name)
            replicas = {r.server_index: r for r in getattr(router, "replicas", [])}
            now = router.clock() if router is not None and hasattr(router, "clock") else time.monotonic()
            for index, server in enumerate(entry.server_list()):
                replica = replicas.get(index)
                if replica is None:
                    available, lag, reason, routed = 1, None, "", 0
                else:
                    available = int(replica.available(now))
                    lag, reason, routed = replica.lag_s, replica.out_reason(now, entry.max_replica_lag), replica.routed
                    if not reason and not replica.in_recovery:
                        reason = "not in recovery (promoted?)"
                rows.append([name, index, server.host, server.port, server.role, available, lag, reason, routed,
                             entry.load_balancing])
        return encode_result(ROUTING_COLUMNS, rows)

    # -- commands ---------------------------------------------------------------------------------------------------
    def _known_db(self, name: str) -> bool:
        return name in self.config.databases

    async def cmd_pause(self, args: list[str], session: Any) -> bytes:
        targets = self._targets(args)
        if isinstance(targets, bytes):
            return targets
        if args:
            self._paused_dbs.add(args[0])
        else:
            self.plane.pause()
        for pool in targets:
            pool.paused = True
        # PgBouncer's PAUSE returns once every server connection is released, then closes them (usage.html, PAUSE).
        while any(pool.active for pool in targets) and any(pool.paused for pool in targets):
            await asyncio.sleep(0.02)
        for pool in targets:
            if pool.paused:
                for conn in list(pool.idle):
                    conn.close("admin PAUSE")
                pool.idle.clear()
        return command_complete("PAUSE")

    async def cmd_resume(self, args: list[str], session: Any) -> bytes:
        if args:
            name = args[0]
            if not self._known_db(name):
                return error(f"no such database: {name}")
            if name not in self._paused_dbs and not getattr(self.plane, "paused", False):
                return error(f"database {name} is not paused")
            self._paused_dbs.discard(name)
            for pool in self._pools():
                if pool.name == name:
                    pool.paused = False
                    _wake(pool)
            return command_complete("RESUME")
        if not getattr(self.plane, "paused", False) and not self._paused_dbs:
            return error("pooler is not paused/suspended")
        self._paused_dbs.clear()
        self.plane.resume()
        for pool in self._pools():
            _wake(pool)
        return command_complete("RESUME")

    async def cmd_kill(self, args: list[str], session: Any) -> bytes:
        if not args:
            return error("KILL needs a database name")
        name = args[0]
        if not self._known_db(name):
            return error(f"no such database: {name}")
        self._paused_dbs.add(name)
        for pool in self._pools():
            if pool.name == name:
                pool.paused = True
                for conn in pool.servers():
                    conn.close("admin KILL")
        for client in self._sessions():
            if client is not session and getattr(client, "database", None) == name and getattr(client, "_console", None) is None:
                client.fatal("database removed", "08P01")
        return command_complete("KILL")

    async def cmd_reload(self, args: list[str], session: Any) -> bytes:
        hook = getattr(self.plane, "admin_reload", None)
        if hook is not None:
            await hook()
            return command_complete("RELOAD")
        if not _signal_process(signal.SIGHUP):
            return error("RELOAD is not available: this process has no reload handler")
        return command_complete("RELOAD")

    async def cmd_shutdown(self, args: list[str], session: Any) -> bytes:
        hook = getattr(self.plane, "admin_shutdown", None)
        if hook is not None:
            await hook()
            return command_complete("SHUTDOWN")
        if not _signal_process(signal.SIGTERM):
            return error("SHUTDOWN is not available: this process has no shutdown handler")
        return command_complete("SHUTDOWN")

    def _targets(self, args: list[str]) -> list[Any] | bytes:
        if not args:
            return self._pools()
        name = args[0]
        if not self._known_db(name):
            return error(f"no such database: {name}")
        return [pool for pool in self._pools() if pool.name == name]


def _wake(pool: Any) -> None:
    """Serve the clients that queued while the pool was paused (PAUSE closed its idle connections)."""
    kick = getattr(pool, "_kick", None)
    if kick is not None and pool.waiters and not pool.closed:
        kick()


def _ptr(obj: Any) -> str:
    return f"0x{id(obj):x}"


def _sockname(transport: Any) -> tuple[str, int]:
    if transport is None:
        return "", 0
    try:
        name = transport.get_extra_info("sockname")
    except Exception:
        return "", 0
    if isinstance(name, tuple) and len(name) >= 2:
        return str(name[0]), int(name[1])
    return "unix", 0


def _signal_process(sig: signal.Signals) -> bool:
    """Signal the nexus-fast supervisor (our parent) or this worker, if a handler for ``sig`` exists."""
    parent = os.getppid()
    try:
        with open(f"/proc/{parent}/cmdline", "rb") as handle:
            parent_cmd = handle.read().replace(b"\x00", b" ")
    except OSError:
        parent_cmd = b""
    handler = signal.getsignal(sig)
    own_handler = handler not in (signal.SIG_DFL, signal.SIG_IGN, None, signal.default_int_handler)
    if b"nexus-fast" in parent_cmd or b"nexus_fast" in parent_cmd:
        if own_handler:  # we are a worker the supervisor forked: it reloads / drains every worker
            os.kill(parent, sig)
            return True
    if own_handler:
        os.kill(os.getpid(), sig)
        return True
    return False


# ---------------------------------------------------------------------------------------------------------------
# SHOW CONFIG: our [postgres] keys in PgBouncer's units (durations in seconds, booleans 0/1)
# ---------------------------------------------------------------------------------------------------------------
_NOT_CHANGEABLE = {"listen", "unix_socket_dir"}


def _config_text(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, SecretStr):
        return "********"
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, float):
        return str(int(value)) if value == int(value) else f"{value:g}"
    if isinstance(value, (list, tuple)):
        return ",".join(str(v) for v in value)
    return str(value)


def config_rows(config: BaseModel) -> list[list[Any]]:
    """(key, value, default, changeable) for every scalar key of the [postgres] section, sorted by key."""
    rows = []
    fields = type(config).model_fields
    for name in sorted(fields):
        info = fields[name]
        value = getattr(config, name)
        if isinstance(value, (dict, BaseModel)):
            continue  # databases / users tables: SHOW DATABASES and SHOW USERS list them
        default = info.default_factory() if info.default_factory is not None else info.default  # type: ignore[call-arg]
        rows.append([name, _config_text(value), _config_text(default), "no" if name in _NOT_CHANGEABLE else "yes"])
    return rows
