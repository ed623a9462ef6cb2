"""Load balancing over two real hot standbys, seen through ``inet_server_port()`` in each answer."""

from __future__ import annotations

import asyncio
import itertools
from collections import Counter
from collections.abc import Iterator

import psycopg
import pytest

from nexus_fast._testing.postgres import PostgresCluster, create_cluster
from nexus_fast._testing.postgres_fixtures import routed_section, running_plane


@pytest.fixture(scope="module")
def two_standbys() -> Iterator[PostgresCluster]:
    cluster = create_cluster(standbys=2)
    try:
        yield cluster
    finally:
        cluster.close()


async def _port_of(conn: psycopg.AsyncConnection, sql: str = "SELECT inet_server_port()") -> int:
    cur = await conn.execute(sql)
    row = await cur.fetchone()
    assert row is not None
    return int(row[-1])


async def _connect(port: int) -> psycopg.AsyncConnection:
    # prepare_threshold=None: psycopg would otherwise prepare a statement on its 5th run (a Parse round trip of its
    # own, routed as one more transaction), and the counts below are per query.
    return await psycopg.AsyncConnection.connect(
        f"host=127.0.0.1 port={port} user=postgres dbname=postgres", autocommit=True, prepare_threshold=None)


async def test_round_robin_alternates_between_the_standbys(two_standbys: PostgresCluster) -> None:
    standby_ports = {s.port for s in two_standbys.standbys}
    async with running_plane(routed_section(two_standbys, load_balancing="round_robin")) as plane:
        conn = await _connect(plane.port)
        try:
            ports = [await _port_of(conn) for _ in range(6)]
        finally:
            await conn.close()
    assert set(ports) == standby_ports
    assert all(a != b for a, b in itertools.pairwise(ports))  # strictly alternating
    assert Counter(ports) == {p: 3 for p in standby_ports}


async def test_least_connections_avoids_the_busy_standby(two_standbys: PostgresCluster) -> None:
    async with running_plane(routed_section(two_standbys, load_balancing="least_connections")) as plane:
        busy, other = await _connect(plane.port), await _connect(plane.port)
        try:
            slow = asyncio.create_task(_port_of(busy, "SELECT pg_sleep(2.0), inet_server_port()"))
            await asyncio.sleep(0.3)
            ports = {await _port_of(other) for _ in range(4)}
            busy_port = await slow
            assert busy_port not in ports and len(ports) == 1  # every read went to the idle standby
            # once the slow read finished, both standbys are idle again and both take reads
            seen = {await _port_of(other) for _ in range(4)}
            assert busy_port in seen
        finally:
            await busy.close()
            await other.close()


async def test_random_uses_both_standbys(two_standbys: PostgresCluster) -> None:
    async with running_plane(routed_section(two_standbys, load_balancing="random")) as plane:
        conn = await _connect(plane.port)
        try:
            counts = Counter([await _port_of(conn) for _ in range(40)])
        finally:
            await conn.close()
    assert set(counts) == {s.port for s in two_standbys.standbys}
    assert min(counts.values()) >= 5
