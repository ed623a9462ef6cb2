"""Fixtures for the PostgreSQL data plane against the machine's PostgreSQL (127.0.0.1:5432, trust).

- ``pg_core_db``: a database of our own (``nexus_pgcore_it``) with pgbench tables, a scratch table ``t`` and two
  roles with passwords stored as md5 and SCRAM (for auth tests and auth_query); created once per session.
- ``make_plane(**postgres_keys)``: the real plane in the test's event loop on a free port; closed after the test.
- ``run(*argv)``: a subprocess (psql, pgbench) without blocking the loop; returns (rc, stdout, stderr).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import psycopg
import pytest

from nexus_fast._testing.ports import free_port, system_postgres_address
from nexus_fast.config.schema import NexusConfig
from nexus_fast.observe.metrics import Metrics
from nexus_fast.postgres.plane import PostgresPlane, create_plane

DB = "nexus_pgcore_it"
MD5_USER, MD5_PASSWORD = "nx_core_md5", "md5-pw"
SCRAM_USER, SCRAM_PASSWORD = "nx_core_scram", "scram-pw"


def _admin_conn(dbname: str = "postgres") -> psycopg.Connection:
    host, port = system_postgres_address()
    return psycopg.connect(host=host, port=port, user="postgres", dbname=dbname, autocommit=True)


@pytest.fixture(scope="session")
def pg_core_db() -> str:
    import subprocess

    host, port = system_postgres_address()
    with _admin_conn() as conn:
        if conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (DB,)).fetchone() is None:
            conn.execute(f"CREATE DATABASE {DB}")
        for user, password, method in ((MD5_USER, MD5_PASSWORD, "md5"), (SCRAM_USER, SCRAM_PASSWORD, "scram-sha-256")):
            conn.execute(f"SET password_encryption = '{method}'")
            if conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (user,)).fetchone() is None:
                conn.execute(f"CREATE ROLE {user} LOGIN PASSWORD '{password}'")
            else:
                conn.execute(f"ALTER ROLE {user} PASSWORD '{password}'")
    with _admin_conn(DB) as conn:
        conn.execute("CREATE TABLE IF NOT EXISTS t (id int PRIMARY KEY, v text)")
        conn.execute(f"GRANT ALL ON t TO {MD5_USER}, {SCRAM_USER}")
        has_pgbench = conn.execute("SELECT to_regclass('pgbench_accounts') IS NOT NULL").fetchone()
    if not (has_pgbench and has_pgbench[0]):
        subprocess.run(["pgbench", "-h", host, "-p", str(port), "-U", "postgres", "-i", "-s", "1", "-q", DB],
                       check=True, capture_output=True, timeout=60)
    return DB


def plane_config(port: int, postgres: dict[str, Any]) -> NexusConfig:
    section: dict[str, Any] = {
        "listen": f"127.0.0.1:{port}",
        "auth_type": "trust",
        "default_pool_size": 4,
        "databases": {DB: {}},
    }
    section.update(postgres)
    return NexusConfig.model_validate({"postgres": section})


@pytest.fixture
async def make_plane(pg_core_db: str) -> AsyncIterator[Callable[..., Awaitable[PostgresPlane]]]:
    planes: list[PostgresPlane] = []

    async def make(**postgres: Any) -> PostgresPlane:
        plane = create_plane(plane_config(free_port(), postgres), Metrics())
        await plane.start()
        planes.append(plane)
        return plane

    yield make
    for plane in planes:
        await plane.close()


async def run(*argv: str, timeout: float = 60.0, env: dict[str, str] | None = None) -> tuple[int, str, str]:
    import os

    proc = await asyncio.create_subprocess_exec(
        *argv, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, env={**os.environ, **(env or {})}
    )
    try:
        out, err = await asyncio.wait_for(proc.communicate(), timeout)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        raise
    return proc.returncode or 0, out.decode(), err.decode()


def direct_conn(dbname: str = DB) -> psycopg.Connection:
    return _admin_conn(dbname)
