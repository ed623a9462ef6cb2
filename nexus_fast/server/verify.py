"""``nexus-fast verify -c FILE``: does every listener of a config answer, and is every backend reachable?

Run against the live system after a deploy. Listeners are checked at the protocol level without credentials:
the admin listener must answer ``GET /ready`` with 200, a PostgreSQL listener must answer an SSLRequest with
``S`` or ``N`` (PostgreSQL protocol docs, 55.2.10 "SSL Session Encryption"), a Redis listener must answer ``PING``
with any RESP reply. When the config reveals a login (``auth_type = trust``, or a user with a plain password), a
real login and ``SELECT 1`` go through the PostgreSQL listener as well. Backends get the real probes of ``nexus_fast.server.backends`` (startup + ``SELECT 1``;
``PING``).
"""

from __future__ import annotations

import asyncio
import struct
from dataclasses import dataclass
from typing import Any

from nexus_fast.config.schema import NexusConfig
from nexus_fast.config.section import parse_listen
from nexus_fast.server import backends

SSL_REQUEST = struct.pack("!ii", 8, 80877103)


@dataclass(frozen=True)
class Check:
    what: str  # "listener admin 127.0.0.1:8080", "backend postgres appdb/primary 127.0.0.1:5432"
    ok: bool
    detail: str = ""

    def __str__(self) -> str:
        return f"{'ok  ' if self.ok else 'FAIL'} {self.what}{': ' + self.detail if self.detail else ''}"


def _connect_target(listen: str) -> tuple[str, int]:
    host, port = parse_listen(listen)
    return ("127.0.0.1" if host in ("0.0.0.0", "") else "::1" if host == "::" else host), port


async def _exchange(listen: str, payload: bytes, timeout: float, read: int | None = None) -> bytes:
    host, port = _connect_target(listen)
    async with asyncio.timeout(timeout):
        reader, writer = await asyncio.open_connection(host, port)
        try:
            writer.write(payload)
            return await (reader.readexactly(read) if read else reader.readline())
        finally:
            writer.close()
            try:
                await writer.wait_closed()
            except OSError:
                pass


async def check_http(label: str, listen: str, path: str, timeout: float, want_200: bool, tls: bool = False) -> Check:
    import aiohttp

    host, port = _connect_target(listen)
    what = f"listener {label} {listen}"
    scheme = "https" if tls else "http"
    try:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=timeout)) as session:
            # Reachability, not PKI: a private CA or self-signed admin certificate must not fail verify.
            async with session.get(f"{scheme}://{host}:{port}{path}", ssl=not tls) as response:
                await response.read()
                if want_200 and response.status != 200:
                    return Check(what, False, f"GET {path} answered {response.status}")
                return Check(what, True, f"GET {path} {response.status}")
    except (OSError, TimeoutError, aiohttp.ClientError) as exc:
        return Check(what, False, _why(exc))


async def check_postgres_listener(listen: str, timeout: float) -> Check:
    what = f"listener postgres {listen}"
    try:
        reply = await _exchange(listen, SSL_REQUEST, timeout, read=1)
    except (OSError, TimeoutError, asyncio.IncompleteReadError) as exc:
        return Check(what, False, _why(exc))
    if reply not in (b"S", b"N"):
        return Check(what, False, f"SSLRequest answered {reply!r}, not a PostgreSQL server")
    return Check(what, True, "answers the PostgreSQL protocol")


async def check_redis_listener(label: str, listen: str, timeout: float) -> Check:
    what = f"listener redis {label} {listen}"
    try:
        reply = await _exchange(listen, b"*1\r\n$4\r\nPING\r\n", timeout)
    except (OSError, TimeoutError) as exc:
        return Check(what, False, _why(exc))
    if reply[:1] not in (b"+", b"-", b"$", b"*", b":", b"%", b">", b"_"):
        return Check(what, False, f"PING answered {reply[:40]!r}, not RESP")
    return Check(what, True, f"PING -> {reply.decode(errors='replace').strip()}")


def postgres_login(config: NexusConfig) -> tuple[str, str | None, str] | None:
    """(user, password, database) that can log in through the proxy, when the config reveals one.

    With ``auth_type = trust`` any configured user (else ``postgres``) will do; otherwise a user whose configured
    secret is a plain password (an md5 or SCRAM secret cannot be turned back into a password).
    """
    pg = config.postgres
    if pg is None:
        return None
    database = next((name for name in pg.databases if name != "*"), "postgres")
    for user, entry in pg.users.items():
        secret = entry.password.get_secret_value() if entry.password is not None else None
        if pg.auth_type == "trust":
            return user, secret, database
        if secret and not secret.startswith(("md5", "SCRAM-SHA-256$")):
            return user, secret, database
    return ("postgres", None, database) if pg.auth_type == "trust" else None


async def check_postgres_query(listen: str, login: tuple[str, str | None, str], timeout: float, tls: bool) -> Check:
    """A real login and ``SELECT 1`` through the proxy's PostgreSQL listener."""
    import asyncpg

    user, password, database = login
    host, port = _connect_target(listen)
    what = f"query postgres {listen} (SELECT 1 as {user}@{database})"
    try:
        conn = await asyncpg.connect(host=host, port=port, user=user, password=password, database=database,
                                     timeout=timeout, ssl="prefer" if tls else False)
        try:
            value = await conn.fetchval("SELECT 1", timeout=timeout)
        finally:
            await conn.close(timeout=timeout)
    except (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
        return Check(what, False, _why(exc))
    return Check(what, value == 1, "" if value == 1 else f"SELECT 1 returned {value!r}")


def _redis_listeners(config: NexusConfig) -> list[tuple[str, str]]:
    section = config.redis
    if section is None:
        return []
    return [(name, pool.listen) for name, pool in section.pools.items()]


async def verify(config: NexusConfig, timeout: float = 3.0) -> list[Check]:
    """Every check, run concurrently; the order of the result is the order of the config."""
    checks = []
    admin = config.admin
    tls = admin.tls_cert_file is not None
    if admin.listen:
        checks.append(check_http("admin", admin.listen, "/ready", timeout, want_200=True, tls=tls))
    if admin.postgres_health_listen:
        checks.append(check_http("postgres-health", admin.postgres_health_listen, "/", timeout, False, tls))
    if admin.redis_health_listen:
        checks.append(check_http("redis-health", admin.redis_health_listen, "/", timeout, False, tls))
    if config.postgres is not None:
        checks.append(check_postgres_listener(config.postgres.listen, timeout))
        login = postgres_login(config)
        if login is not None:
            tls = config.postgres.client_tls_sslmode != "disable"
            checks.append(check_postgres_query(config.postgres.listen, login, timeout, tls))
    for name, listen in _redis_listeners(config):
        checks.append(check_redis_listener(name, listen, timeout))

    async def backend_check(coro: Any, what: str) -> Check:
        health = await coro
        return Check(what, health.healthy, health.reason or (f"{health.latency_ms} ms" if health.latency_ms else ""))

    for pg in backends.postgres_backends(config):
        checks.append(backend_check(backends.probe_postgres(pg, timeout),
                                    f"backend postgres {pg.name} {pg.address} (db {pg.dbname}, user {pg.user})"))
    for rd in backends.redis_backends(config):
        checks.append(backend_check(backends.probe_redis(rd, timeout), f"backend redis {rd.name} {rd.address}"))
    return list(await asyncio.gather(*checks))


def _why(exc: BaseException) -> str:
    exc = getattr(exc, "os_error", None) or exc  # aiohttp wraps the connect error
    if isinstance(exc, TimeoutError):
        return "timed out"
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused"
    return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__


def run_verify(config: NexusConfig, timeout: float = 3.0) -> int:
    """Print one line per check; 0 when all passed, 1 otherwise (the failures listed last)."""
    results = asyncio.run(verify(config, timeout))
    for check in results:
        print(check)
    failures = [c for c in results if not c.ok]
    if failures:
        print(f"{len(failures)} of {len(results)} checks failed:")
        for check in failures:
            print(f"  {check.what}: {check.detail}")
        return 1
    print(f"all {len(results)} checks passed")
    return 0
