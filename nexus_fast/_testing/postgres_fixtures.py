"""Pytest fixtures and helpers over the throwaway PostgreSQL harness (``nexus_fast._testing.postgres``).

Imported by the routing tests' conftest files (``tests/integration/postgres_routing``, ``tests/faults/
postgres_routing``) and test modules; it lives in the package so it imports the same way however pytest is started.

- ``pg_cluster_module``: one primary + one hot standby per test module (building one costs ~2 s, so modules share).
- ``pg_cluster``: the module's cluster, put back in a known state before each test: both nodes running, WAL replay
  resumed and caught up. Tests may stop, kill, restart, pause and promote nodes freely.
- ``system_pg_dsn``: the machine's own PostgreSQL (never stopped) for tests needing one plain server.
- ``running_plane(postgres_section)``: the real PostgreSQL plane in the test's event loop, closed afterwards.
- ``routed_section(cluster, **db)``: a ``[postgres]`` section routing one database over the cluster.
- ``psql(port, database, sql, user, *args)``: psql against the proxy, returning (exit code, stdout, stderr).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest

from nexus_fast._testing.ports import free_port
from nexus_fast._testing.postgres import (
    PostgresCluster,
    create_cluster,
    pg_binaries_available,
    system_postgres_dsn,
)


@pytest.fixture(scope="module")
def pg_cluster_module() -> Iterator[PostgresCluster]:
    if not pg_binaries_available():
        pytest.fail("PostgreSQL 15 binaries are missing (/usr/lib/postgresql/15/bin); the harness needs them")
    cluster = create_cluster(standbys=1)
    try:
        yield cluster
    finally:
        cluster.close()


def _restore(cluster: PostgresCluster) -> None:
    if any(node.role == "primary" for node in cluster.standbys):
        raise RuntimeError("a test promoted the module's standby; promote in a cluster of your own")
    for node in cluster.nodes:
        if not node.is_running():
            node.start()
    for standby in cluster.standbys:
        if cluster.replay_paused(standby):
            cluster.resume_replay(standby)
        cluster.wait_caught_up(standby)


@pytest.fixture
def pg_cluster(pg_cluster_module: PostgresCluster) -> Iterator[PostgresCluster]:
    _restore(pg_cluster_module)
    yield pg_cluster_module
    _restore(pg_cluster_module)


@pytest.fixture
def system_pg_dsn() -> str:
    return system_postgres_dsn("test")


@contextlib.asynccontextmanager
async def running_plane(postgres: dict[str, Any]) -> AsyncIterator[Any]:
    """The real PostgreSQL plane (``create_plane``) in this event loop, on a free port, closed afterwards.

    ``postgres`` is the ``[postgres]`` table; ``listen`` defaults to a free port. Yields the plane (``plane.port``).
    """
    from nexus_fast.config.schema import NexusConfig
    from nexus_fast.observe.metrics import Metrics
    from nexus_fast.postgres.plane import create_plane

    section = {"listen": f"127.0.0.1:{free_port()}", "auth_type": "trust", **postgres}
    config = NexusConfig.model_validate({"postgres": section})
    plane = create_plane(config, Metrics())
    await plane.start()
    try:
        yield plane
    finally:
        await plane.close()


async def psql(port: int, database: str, sql: str, user: str = "postgres", *args: str) -> tuple[int, str, str]:
    """Run psql against the proxy; returns (exit code, stdout, stderr)."""
    proc = await asyncio.create_subprocess_exec(
        "psql", "-X", "-h", "127.0.0.1", "-p", str(port), "-U", user, "-d", database, *args, "-c", sql,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        env={**os.environ, "PGCONNECT_TIMEOUT": "5"},
    )
    try:
        out, err = await asyncio.wait_for(proc.communicate(), 30)
    except TimeoutError:
        proc.kill()  # never leave a child behind: the event loop could not close while it runs
        await proc.wait()
        raise
    return proc.returncode or 0, out.decode(), err.decode()


def routed_section(cluster: PostgresCluster, database: str = "postgres", **db: Any) -> dict[str, Any]:
    """A [postgres] section whose database ``database`` is the cluster's primary + standbys, polled every 100 ms."""
    servers = [{"host": "127.0.0.1", "port": cluster.primary.port, "role": "primary"}]
    servers += [{"host": "127.0.0.1", "port": s.port, "role": "replica"} for s in cluster.standbys]
    return {
        "admin_users": ["postgres"],
        "pool_mode": "transaction",
        "replica_check_interval": "100ms",
        "replica_check_timeout": "1s",
        "connect_timeout": "1s",
        "databases": {database: {"servers": servers, **db}},
    }
