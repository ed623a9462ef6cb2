"""Fixtures over the throwaway PostgreSQL harness (``nexus_fast._testing.postgres``).

- ``pg_cluster_module``: one primary + one hot standby per test module (building one costs ~2 s, so modules share).
- ``pg_cluster``: the module's cluster, put back in a known state before each test: both nodes running, WAL replay
  resumed and caught up. Tests may stop, kill, restart and pause nodes freely.
- ``system_pg_dsn``: the machine's own PostgreSQL (never stopped) for tests needing one plain server.

The fault tests in ``tests/faults/postgres_routing`` import these with ``from ...conftest import *``.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

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
