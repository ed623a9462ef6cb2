"""The backends a config names, and real probes of them (used by ``nexus-fast verify`` and the /health fallback).

A PostgreSQL backend is probed with a full startup (authentication included) and ``SELECT 1`` through asyncpg;
a Redis backend with ``PING`` over a fresh connection. These are the checks a plane's ``check_health`` makes; the
admin layer uses them directly only for a configured section whose plane module is not installed, so /health
reports the real backends instead of nothing.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import Any

from nexus_fast.config.schema import NexusConfig
from nexus_fast.server.health import Probe
from nexus_fast.server.plane import BackendHealth


@dataclass(frozen=True)
class PostgresBackend:
    name: str  # "<database>/<role>"
    host: str
    port: int
    dbname: str
    user: str
    password: str | None

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"


@dataclass(frozen=True)
class RedisBackend:
    name: str  # "<pool>/<server name or index>"
    host: str
    port: int
    password: str | None = None
    username: str | None = None

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"


def _secret(value: Any) -> str | None:
    if value is None:
        return None
    getter = getattr(value, "get_secret_value", None)
    return getter() if getter else str(value)


def postgres_backends(config: NexusConfig) -> list[PostgresBackend]:
    """Every server of every ``[postgres.databases.*]`` entry, with the login a probe should use."""
    section = config.postgres
    if section is None:
        return []
    # The login a probe uses when a database does not force one: auth_user, else a configured user whose secret is a
    # plain password (the proxy logs in to the backend as its clients do), else "postgres" without a password.
    default_user, default_password = "postgres", None
    if section.auth_user:
        default_user, default_password = section.auth_user, _secret(section.auth_password)
    else:
        for name, entry in section.users.items():
            secret = _secret(entry.password)
            if secret and not secret.startswith(("md5", "SCRAM-SHA-256$")):
                default_user, default_password = name, secret
                break
    out: list[PostgresBackend] = []
    for key, db in section.databases.items():
        dbname = db.backend_dbname(key) if key != "*" or db.dbname else "postgres"
        user = db.user or default_user
        password = _secret(db.password) if db.user else default_password
        servers = db.server_list()
        for index, server in enumerate(servers):
            role = server.role if sum(s.role == server.role for s in servers) == 1 else f"{server.role}{index}"
            out.append(PostgresBackend(f"{key}/{role}", server.host, server.port, dbname, user, password))
    return out


def redis_backends(config: NexusConfig) -> list[RedisBackend]:
    """Every server of every ``[redis.pools.*]`` entry, with the credentials the proxy sends to the nodes."""
    section = config.redis
    if section is None:
        return []
    out: list[RedisBackend] = []
    for pool_name, pool in section.pools.items():
        password = _secret(pool.backend_password)
        for spec in pool.server_specs():
            out.append(RedisBackend(f"{pool_name}/{spec.name}", spec.host, spec.port, password,
                                    pool.backend_username))
    return out


async def probe_postgres(backend: PostgresBackend, timeout: float) -> BackendHealth:
    """A real startup (with authentication) and ``SELECT 1``."""
    import asyncpg

    started = time.perf_counter()
    try:
        conn = await asyncpg.connect(host=backend.host, port=backend.port, user=backend.user,
                                     password=backend.password, database=backend.dbname, timeout=timeout, ssl=False)
        try:
            await conn.fetchval("SELECT 1", timeout=timeout)
        finally:
            await conn.close(timeout=timeout)
    except (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
        return BackendHealth("postgres", backend.name, backend.address, False, _reason(exc))
    return BackendHealth("postgres", backend.name, backend.address, True, "",
                         round((time.perf_counter() - started) * 1000, 3))


async def probe_redis(backend: RedisBackend, timeout: float) -> BackendHealth:
    """``AUTH`` when a password is configured, then ``PING`` expecting ``+PONG``."""
    started = time.perf_counter()
    writer: asyncio.StreamWriter | None = None
    try:
        async with asyncio.timeout(timeout):
            reader, writer = await asyncio.open_connection(backend.host, backend.port)
            if backend.password:
                auth = [backend.username.encode()] if backend.username else []
                writer.write(_resp_command(b"AUTH", *auth, backend.password.encode()))
                reply = await reader.readline()
                if not reply.startswith(b"+OK"):
                    raise ConnectionError(f"AUTH refused: {reply.decode(errors='replace').strip()}")
            writer.write(b"*1\r\n$4\r\nPING\r\n")
            reply = await reader.readline()
            if not reply.startswith(b"+PONG"):
                raise ConnectionError(f"PING answered {reply.decode(errors='replace').strip()!r}")
    except (OSError, TimeoutError) as exc:
        return BackendHealth("redis", backend.name, backend.address, False, _reason(exc))
    finally:
        if writer is not None:
            writer.close()
            try:
                await writer.wait_closed()
            except OSError:
                pass
    return BackendHealth("redis", backend.name, backend.address, True, "",
                         round((time.perf_counter() - started) * 1000, 3))


def _resp_command(*parts: bytes) -> bytes:
    return b"*%d\r\n" % len(parts) + b"".join(b"$%d\r\n%s\r\n" % (len(p), p) for p in parts)


def _reason(exc: BaseException) -> str:
    if isinstance(exc, TimeoutError):
        return "timed out"
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused"
    text = str(exc).strip() or type(exc).__name__
    return text.splitlines()[0]


def probe_for_section(config: NexusConfig, section: str) -> Probe | None:
    """A health probe over the backends of ``section`` built from the config alone (no plane needed)."""
    if section == "postgres":
        pg = postgres_backends(config)

        async def probe_pg(timeout: float) -> list[BackendHealth]:
            return list(await asyncio.gather(*(probe_postgres(b, timeout) for b in pg)))

        return probe_pg
    if section == "redis":
        rd = redis_backends(config)

        async def probe_rd(timeout: float) -> list[BackendHealth]:
            return list(await asyncio.gather(*(probe_redis(b, timeout) for b in rd)))

        return probe_rd
    return None
