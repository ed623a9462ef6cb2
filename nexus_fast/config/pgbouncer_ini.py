"""PgBouncer's ``pgbouncer.ini`` (and its ``userlist.txt``) read as a nexus.toml ``[postgres]`` section.

A PgBouncer user points nexus-fast at the file they have (``nexus-fast serve -c pgbouncer.ini``) or converts it
(``nexus-fast config import pgbouncer.ini``). Keys keep PgBouncer's meanings and units, from its configuration
reference (``man 5 pgbouncer``, https://www.pgbouncer.org/config.html, version 1.18 as Debian 12 ships it):

- ``[pgbouncer]``: times are seconds (``server_lifetime = 3600``, fractions allowed), written out as explicit
  durations (``"3600s"``); ``tcp_user_timeout`` is milliseconds; booleans are ``0``/``1`` (also yes/no, on/off,
  true/false); lists are comma- or space-separated. ``listen_addr`` + ``listen_port`` become ``listen``
  (``*`` means every address). Where PgBouncer's default differs from ours the PgBouncer default is written
  explicitly when the key is absent (``pool_mode = session``, ``auth_type = md5``, ``max_client_conn = 100``,
  ``server_connect_timeout = 15``, ``admin_users`` empty), so the file means what it meant under PgBouncer.
- ``[databases]``: ``name = libpq-style connection string`` (``key=value``, values optionally single-quoted with
  ``\\'`` and ``\\\\`` escapes): ``dbname host port user password pool_size min_pool_size reserve_pool
  (reserve_pool_size) pool_mode max_db_connections connect_query``. A missing ``host`` means PgBouncer's Unix
  socket directory (``unix_socket_dir``, default ``/tmp``). A comma-separated host list (PgBouncer round-robins
  over equal hosts) becomes one primary (the first) and read replicas (the rest), with a warning. ``*`` is the
  fallback database, as in PgBouncer.
- ``[users]``: ``name = pool_mode=... max_user_connections=... pool_size=...``.
- ``auth_file`` (and ``%include`` files) are read relative to the ini file's directory (PgBouncer resolves them
  against its working directory, which for a service is where the ini lives); the auth file is parsed now so a
  missing or malformed file is reported at load time with the ini key that named it.

Nothing is silently ignored: keys that nexus-fast does not need (logging, DNS, socket-level tuning, TLS cipher
lists ...) and keys this importer does not know are returned as warnings naming the section and key; values that
cannot be honoured (``auth_type = hba``, a malformed connection string, a bad number) are errors
(``ConfigError`` with every problem).
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from typing import Any

from nexus_fast.config.errors import ConfigError, ConfigProblem

# [pgbouncer] keys with a direct counterpart: pgbouncer key -> (our key, kind).
_DIRECT: dict[str, tuple[str, str]] = {
    "pool_mode": ("pool_mode", "pool_mode"),
    "max_client_conn": ("max_client_conn", "int"),
    "default_pool_size": ("default_pool_size", "int"),
    "min_pool_size": ("min_pool_size", "int"),
    "reserve_pool_size": ("reserve_pool_size", "int"),
    "reserve_pool_timeout": ("reserve_pool_timeout", "seconds"),
    "max_db_connections": ("max_db_connections", "int"),
    "max_prepared_statements": ("max_prepared_statements", "int"),
    "ignore_startup_parameters": ("ignore_startup_parameters", "list"),
    "application_name_add_host": ("application_name_add_host", "bool"),
    "stats_period": ("stats_period", "seconds"),
    "auth_user": ("auth_user", "str"),
    "auth_query": ("auth_query", "str"),
    "admin_users": ("admin_users", "list"),
    "stats_users": ("stats_users", "list"),
    "server_reset_query": ("server_reset_query", "str"),
    "server_reset_query_always": ("server_reset_query_always", "bool"),
    "server_check_delay": ("server_check_delay", "seconds"),
    "server_check_query": ("server_check_query", "str"),
    "server_lifetime": ("server_lifetime", "seconds"),
    "server_idle_timeout": ("server_idle_timeout", "seconds"),
    "server_connect_timeout": ("connect_timeout", "seconds"),
    "client_login_timeout": ("client_login_timeout", "seconds"),
    "query_timeout": ("query_timeout", "seconds"),
    "query_wait_timeout": ("query_wait_timeout", "seconds"),
    "client_idle_timeout": ("client_idle_timeout", "seconds"),
    "idle_transaction_timeout": ("idle_transaction_timeout", "seconds"),
    "tcp_keepalive": ("tcp_keepalive", "bool"),
    "tcp_keepcnt": ("tcp_keepcnt", "int"),
    "tcp_keepidle": ("tcp_keepidle", "seconds"),
    "tcp_keepintvl": ("tcp_keepintvl", "seconds"),
    "client_tls_sslmode": ("client_tls_sslmode", "str"),
    "client_tls_key_file": ("client_tls_key_file", "path"),
    "client_tls_cert_file": ("client_tls_cert_file", "path"),
    "client_tls_ca_file": ("client_tls_ca_file", "path"),
    "server_tls_sslmode": ("server_tls_sslmode", "str"),
    "server_tls_ca_file": ("server_tls_ca_file", "path"),
    "server_tls_key_file": ("server_tls_key_file", "path"),
    "server_tls_cert_file": ("server_tls_cert_file", "path"),
}

# Known PgBouncer keys nexus-fast does not use, with the reason given in the warning.
_NOT_USED: dict[str, str] = {
    "logfile": "logs go to stderr; see server.log_format / server.log_level",
    "pidfile": "nexus-fast does not write a pid file; run it under a supervisor (systemd, Kubernetes)",
    "syslog": "logs go to stderr", "syslog_ident": "logs go to stderr", "syslog_facility": "logs go to stderr",
    "log_connections": "connection events are metrics (nexus_postgres_clients)",
    "log_disconnections": "connection events are metrics (nexus_postgres_clients)",
    "log_pooler_errors": "errors are always logged", "log_stats": "statistics are on /metrics and SHOW STATS",
    "verbose": "see server.log_level",
    "user": "run nexus-fast as the user you want (it never switches user)",
    "unix_socket_mode": "the Unix socket keeps the process umask", "unix_socket_group": "not supported",
    "server_round_robin": "server connections are reused LIFO (the warmest first)",
    "disable_pqexec": "multi-statement simple queries are always allowed (routing classifies each statement)",
    "conffile": "the file given with -c is the config file", "service_name": "Windows only",
    "job_name": "Windows only",
    "auth_hba_file": "HBA files are not supported; use auth_type and TLS settings",
    "server_login_retry": "failed connects are retried with exponential backoff (connect_retries, "
                          "retry_backoff_base, retry_backoff_max)",
    "server_fast_close": "not supported", "autodb_idle_timeout": "databases are configured, not created on demand",
    "dns_max_ttl": "host names are resolved by the OS resolver at connect time",
    "dns_nxdomain_ttl": "host names are resolved by the OS resolver at connect time",
    "dns_zone_check_period": "not supported", "resolv_conf": "the OS resolver configuration is used",
    "client_tls_protocols": "TLS 1.2+ with Python's secure defaults", "client_tls_ciphers": "Python's secure defaults",
    "client_tls_ecdhcurve": "Python's secure defaults", "client_tls_dheparams": "Python's secure defaults",
    "server_tls_protocols": "TLS 1.2+ with Python's secure defaults", "server_tls_ciphers": "Python's secure defaults",
    "suspend_timeout": "SUSPEND / online restart use SO_REUSEPORT workers instead",
    "pkt_buf": "buffers are sized by the event loop", "max_packet_size": "not configurable",
    "listen_backlog": "the listen backlog is chosen by nexus-fast", "sbuf_loopcnt": "not applicable",
    "so_reuseport": "listeners always use SO_REUSEPORT (server.workers)",
    "tcp_defer_accept": "not configurable", "tcp_socket_buffer": "the OS default is used",
    "tcp_user_timeout": "not configurable (milliseconds in PgBouncer)",
    "max_user_connections": "set max_user_connections per user in [users] / postgres.users",
    "track_extra_parameters": "client_encoding, DateStyle, TimeZone, standard_conforming_strings, "
                              "application_name and IntervalStyle are tracked",
    "query_wait_notify": "not supported", "auth_dbname": "auth_query runs on the client's database",
    "peer_id": "peering is not supported", "client_tls13_ciphers": "Python's secure defaults",
    "server_tls13_ciphers": "Python's secure defaults", "scram_iterations": "not configurable",
    "max_prepared_statements_per_client": "not supported",
}

_DB_DIRECT: dict[str, tuple[str, str]] = {
    "dbname": ("dbname", "str"),
    "user": ("user", "str"),
    "password": ("password", "str"),
    "pool_size": ("pool_size", "int"),
    "min_pool_size": ("min_pool_size", "int"),
    "reserve_pool": ("reserve_pool_size", "int"),
    "reserve_pool_size": ("reserve_pool_size", "int"),  # the pre-1.17 spelling
    "pool_mode": ("pool_mode", "pool_mode"),
    "max_db_connections": ("max_db_connections", "int"),
    "connect_query": ("connect_query", "str"),
}
_DB_NOT_USED: dict[str, str] = {
    "auth_user": "a per-database auth_user is not supported; the global auth_user is used",
    "client_encoding": "clients set client_encoding themselves; it is tracked per client",
    "datestyle": "clients set DateStyle themselves; it is tracked per client",
    "timezone": "clients set TimeZone themselves; it is tracked per client",
    "application_name": "clients set application_name themselves; it is tracked per client",
    "load_balance_hosts": "replicas are chosen by load_balancing",
    "auth_dbname": "auth_query runs on the client's database",
    "server_lifetime": "set server_lifetime in [pgbouncer]",
}
_USER_DIRECT: dict[str, tuple[str, str]] = {
    "pool_mode": ("pool_mode", "pool_mode"),
    "max_user_connections": ("max_user_connections", "int"),
    "pool_size": ("pool_size", "int"),
}

# PgBouncer defaults that differ from nexus-fast's (written explicitly so the file keeps its PgBouncer meaning).
_PGBOUNCER_DEFAULTS: dict[str, Any] = {
    "pool_mode": "session",
    "auth_type": "md5",
    "max_client_conn": 100,
    "connect_timeout": "15s",
    "admin_users": [],
    "server_check_query": "select 1",
}

_TRUE = {"1", "yes", "on", "true"}
_FALSE = {"0", "no", "off", "false"}
_POOL_MODES = {"session", "transaction", "statement"}


@dataclass
class _Ini:
    sections: dict[str, list[tuple[str, str, int, str]]] = field(default_factory=dict)  # name -> (key, value, line, file)


def _read_ini(text: str, source: str, base_dir: str, problems: list[ConfigProblem], depth: int = 0,
              ini: _Ini | None = None, section: list[str] | None = None) -> _Ini:
    """PgBouncer's ini dialect: ``[section]``, ``key = value``, ``;``/``#`` comment lines, ``%include file``."""
    ini = ini or _Ini()
    current = section if section is not None else [""]
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line[0] in ";#":
            continue
        if line.lower().startswith("%include"):
            target = line[len("%include"):].strip()
            path = target if os.path.isabs(target) else os.path.join(base_dir, target)
            if depth >= 10:
                problems.append(ConfigProblem(f"%include {target}", "includes nested more than 10 deep"))
                continue
            try:
                with open(path, encoding="utf-8") as handle:
                    included = handle.read()
            except OSError as exc:
                problems.append(ConfigProblem(f"%include {target}", f"cannot read {path}: {exc.strerror or exc}"))
                continue
            _read_ini(included, path, os.path.dirname(path), problems, depth + 1, ini, current)
            continue
        if line.startswith("["):
            if not line.endswith("]"):
                problems.append(ConfigProblem(f"line {number}", f"malformed section header {line!r}"))
                continue
            current[0] = line[1:-1].strip().lower()
            ini.sections.setdefault(current[0], [])
            continue
        key, sep, value = line.partition("=")
        if not sep:
            problems.append(ConfigProblem(f"line {number}", f"expected key = value, got {line!r}"))
            continue
        key = key.strip()
        if len(key) >= 2 and key[0] == key[-1] == '"':
            key = key[1:-1].replace('""', '"')  # quoted database names (PgBouncer allows "my db")
        ini.sections.setdefault(current[0], []).append((key, value.strip(), number, source))
    return ini


def parse_connstr(text: str) -> dict[str, str]:
    """libpq-style ``key=value key='quoted value'`` into a dict; raises ValueError naming the problem."""
    out: dict[str, str] = {}
    pos, n = 0, len(text)
    while pos < n:
        while pos < n and text[pos].isspace():
            pos += 1
        if pos >= n:
            break
        match = re.match(r"([A-Za-z_][A-Za-z0-9_]*)\s*=\s*", text[pos:])
        if not match:
            raise ValueError(f"expected key=value at {text[pos:pos + 20]!r}")
        key = match.group(1).lower()
        pos += match.end()
        if pos < n and text[pos] == "'":
            pos += 1
            chars = []
            while True:
                if pos >= n:
                    raise ValueError(f"unterminated quoted value for {key}")
                ch = text[pos]
                if ch == "\\" and pos + 1 < n:
                    chars.append(text[pos + 1])
                    pos += 2
                    continue
                if ch == "'":
                    pos += 1
                    break
                chars.append(ch)
                pos += 1
            value = "".join(chars)
        else:
            start = pos
            while pos < n and not text[pos].isspace():
                pos += 1
            value = text[start:pos]
        out[key] = value
    return out


def _convert(kind: str, value: str, where: str, problems: list[ConfigProblem], base_dir: str) -> Any:
    """A PgBouncer value in our form, or None after recording a problem."""
    try:
        if kind == "int":
            number = int(value)
            if number < 0:
                raise ValueError
            return number
        if kind == "seconds":
            if re.fullmatch(r"\d+(\.\d+)?", value):
                seconds = float(value)
                return "0" if seconds == 0 else (f"{int(seconds)}s" if seconds == int(seconds) else f"{value}s")
            if re.fullmatch(r"\d+(\.\d+)?\s*(us|ms|s|min|m|h|d)", value):
                return value  # already explicit
            raise ValueError
        if kind == "bool":
            lowered = value.lower()
            if lowered in _TRUE:
                return True
            if lowered in _FALSE:
                return False
            raise ValueError
        if kind == "list":
            return [item for item in re.split(r"[\s,]+", value) if item]
        if kind == "pool_mode":
            if value.lower() not in _POOL_MODES:
                raise ValueError
            return value.lower()
        if kind == "path":
            if not value:
                return None
            return value if os.path.isabs(value) else os.path.normpath(os.path.join(base_dir, value))
        return value
    except ValueError:
        expected = {"int": "a non-negative integer", "seconds": "a number of seconds", "bool": "0 or 1",
                    "pool_mode": "session, transaction or statement"}.get(kind, "a valid value")
        problems.append(ConfigProblem(where, f"{value!r} is not {expected}"))
        return None


def import_pgbouncer_ini(text: str, source: str, base_dir: str) -> tuple[dict[str, Any], list[str]]:
    """The nexus.toml-shaped dict for a pgbouncer.ini, and warnings about keys that were not carried over."""
    problems: list[ConfigProblem] = []
    warnings: list[str] = []
    ini = _read_ini(text, source, base_dir, problems)
    if "pgbouncer" not in ini.sections and "databases" not in ini.sections:
        problems.append(ConfigProblem("", "no [pgbouncer] or [databases] section: is this a pgbouncer.ini?"))
        raise ConfigError(source, problems)

    pg: dict[str, Any] = {}
    settings = {key.lower(): (value, line) for key, value, line, _file in ini.sections.get("pgbouncer", [])}
    listen_addr = settings.pop("listen_addr", (None, 0))[0]
    listen_port_text = settings.pop("listen_port", ("6432", 0))[0]
    unix_socket_dir = settings.pop("unix_socket_dir", (None, 0))[0]
    auth_type = settings.pop("auth_type", (None, 0))[0]
    auth_file = settings.pop("auth_file", (None, 0))[0]

    # listen_addr + listen_port -> listen
    if not listen_port_text.isdigit() or not 0 < int(listen_port_text) < 65536:
        problems.append(ConfigProblem("pgbouncer.listen_port", f"{listen_port_text!r} is not a port number"))
        listen_port_text = "6432"
    addresses = [a for a in re.split(r"[\s,]+", listen_addr or "") if a]
    if not addresses:
        warnings.append("pgbouncer.listen_addr is not set (PgBouncer then listens on its Unix socket only); "
                        "nexus-fast listens on 127.0.0.1")
        addresses = ["127.0.0.1"]
    if len(addresses) > 1:
        warnings.append(f"pgbouncer.listen_addr lists {len(addresses)} addresses; nexus-fast listens on the first "
                        f"({addresses[0]})")
    host = "0.0.0.0" if addresses[0] == "*" else addresses[0]
    host = "127.0.0.1" if host == "localhost" else host
    pg["listen"] = f"[{host}]:{listen_port_text}" if ":" in host else f"{host}:{listen_port_text}"
    if unix_socket_dir:
        pg["unix_socket_dir"] = unix_socket_dir

    # auth_type
    if auth_type is not None:
        lowered = auth_type.lower()
        if lowered in ("trust", "md5", "scram-sha-256"):
            pg["auth_type"] = lowered
        elif lowered == "any":
            pg["auth_type"] = "trust"
            warnings.append("pgbouncer.auth_type = any is imported as trust (the user name is kept, not ignored)")
        else:
            problems.append(ConfigProblem("pgbouncer.auth_type", f"{auth_type!r} is not supported (use trust, md5 "
                                          "or scram-sha-256; plain, cert, hba and pam are not available)"))

    # auth_file: resolved against the ini's directory and read now
    if auth_file:
        path = auth_file if os.path.isabs(auth_file) else os.path.normpath(os.path.join(base_dir, auth_file))
        try:
            with open(path, encoding="utf-8") as handle:
                auth_text = handle.read()
        except OSError as exc:
            problems.append(ConfigProblem("pgbouncer.auth_file", f"cannot read {path}: {exc.strerror or exc}"))
        else:
            pg["auth_file"] = path
            warnings.extend(_check_auth_file(auth_text, path))

    for key, (value, _line) in settings.items():
        where = f"pgbouncer.{key}"
        if key in _DIRECT:
            ours, kind = _DIRECT[key]
            converted = _convert(kind, value, where, problems, base_dir)
            if converted is not None:
                pg[ours] = converted
        elif key in _NOT_USED:
            warnings.append(f"{where} is not used: {_NOT_USED[key]}")
        else:
            warnings.append(f"{where} is not a PgBouncer setting nexus-fast knows; ignored")
    for ours, default in _PGBOUNCER_DEFAULTS.items():
        pg.setdefault(ours, default)

    socket_host = unix_socket_dir or "/tmp"
    databases: dict[str, Any] = {}
    for name, value, _line, _file in ini.sections.get("databases", []):
        where = f"databases.{name}"
        try:
            params = parse_connstr(value)
        except ValueError as exc:
            problems.append(ConfigProblem(where, f"bad connection string: {exc}"))
            continue
        databases[name] = _database(name, params, where, socket_host, problems, warnings, base_dir)
    pg["databases"] = databases

    users: dict[str, Any] = {}
    for name, value, _line, _file in ini.sections.get("users", []):
        where = f"users.{name}"
        try:
            params = parse_connstr(value)
        except ValueError as exc:
            problems.append(ConfigProblem(where, f"bad settings string: {exc}"))
            continue
        user: dict[str, Any] = {}
        for key, raw in params.items():
            if key in _USER_DIRECT:
                ours, kind = _USER_DIRECT[key]
                converted = _convert(kind, raw, f"{where}.{key}", problems, base_dir)
                if converted is not None:
                    user[ours] = converted
            else:
                warnings.append(f"{where}.{key} is not a [users] setting nexus-fast knows; ignored")
        users[name] = user
    if users:
        pg["users"] = users

    for section in ini.sections:
        if section not in ("pgbouncer", "databases", "users", "peers"):
            warnings.append(f"[{section}] is not a PgBouncer section; ignored")
    if ini.sections.get("peers"):
        warnings.append("[peers] is not used: peering is not supported")
    if problems:
        raise ConfigError(source, problems)
    return {"postgres": pg}, warnings


def _check_auth_file(text: str, path: str) -> list[str]:
    """Warnings for userlist.txt lines PgBouncer's format does not allow (they would be skipped)."""
    from nexus_fast.postgres.auth import parse_auth_file

    out = []
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if line and line[0] not in ";#" and not parse_auth_file(line):
            out.append(f"{path} line {number} is not '\"user\" \"secret\"'; skipped")
    return out


def _database(name: str, params: dict[str, str], where: str, socket_host: str, problems: list[ConfigProblem],
              warnings: list[str], base_dir: str) -> dict[str, Any]:
    entry: dict[str, Any] = {}
    for key, raw in params.items():
        if key in ("host", "port"):
            continue
        if key in _DB_DIRECT:
            ours, kind = _DB_DIRECT[key]
            converted = _convert(kind, raw, f"{where}.{key}", problems, base_dir)
            if converted is not None:
                entry[ours] = converted
        elif key in _DB_NOT_USED:
            warnings.append(f"{where}.{key} is not used: {_DB_NOT_USED[key]}")
        else:
            warnings.append(f"{where}.{key} is not a connection-string key nexus-fast knows; ignored")
    port_text = params.get("port", "5432")
    if not port_text.isdigit() or not 0 < int(port_text) < 65536:
        problems.append(ConfigProblem(f"{where}.port", f"{port_text!r} is not a port number"))
        port_text = "5432"
    hosts = [h for h in params.get("host", "").split(",") if h.strip()] or [socket_host]
    if len(hosts) > 1:
        warnings.append(f"{where}.host lists {len(hosts)} hosts (PgBouncer round-robins over them); nexus-fast "
                        f"sends writes to the first ({hosts[0].strip()}) and spreads reads over the others as "
                        f"replicas")
    entry["servers"] = [
        {"host": h.strip(), "port": int(port_text), "role": "primary" if i == 0 else "replica"}
        for i, h in enumerate(hosts)
    ]
    return entry
