"""Read/write splitting through the real proxy over a real primary + hot standby.

Where a statement ran is shown by ``pg_is_in_recovery()`` in its own answer: true on the standby, false on the
primary.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import psycopg
import pytest

from nexus_fast._testing.postgres import PostgresCluster
from nexus_fast._testing.postgres_fixtures import psql, routed_section, running_plane

ON_REPLICA, ON_PRIMARY = True, False


async def _connect(port: int, **kw: Any) -> psycopg.AsyncConnection:
    return await psycopg.AsyncConnection.connect(
        f"host=127.0.0.1 port={port} user=postgres dbname=postgres connect_timeout=5", autocommit=True, **kw)


async def _where(conn: psycopg.AsyncConnection, sql: str, params: Any = None) -> bool:
    cur = await conn.execute(sql, params)
    row = await cur.fetchone()
    assert row is not None
    return bool(row[-1])


async def test_reads_go_to_the_replica_and_writes_to_the_primary(pg_cluster: PostgresCluster) -> None:
    pg_cluster.primary.execute("DROP TABLE IF EXISTS rw; CREATE TABLE rw (x int); CREATE SEQUENCE IF NOT EXISTS rw_seq")
    pg_cluster.wait_caught_up()
    async with running_plane(routed_section(pg_cluster)) as plane:
        conn = await _connect(plane.port)
        try:
            assert await _where(conn, "SELECT pg_is_in_recovery()") is ON_REPLICA
            assert await _where(conn, "SELECT count(*), pg_is_in_recovery() FROM rw") is ON_REPLICA
            # extended protocol with parameters (psycopg's default)
            assert await _where(conn, "SELECT %s::int, pg_is_in_recovery()", (5,)) is ON_REPLICA
            assert await _where(conn, "INSERT INTO rw VALUES (1) RETURNING pg_is_in_recovery()") is ON_PRIMARY
            assert await _where(conn, "SELECT pg_is_in_recovery() FROM rw FOR UPDATE") is ON_PRIMARY
            assert await _where(
                conn, "WITH i AS (INSERT INTO rw VALUES (2) RETURNING x) SELECT pg_is_in_recovery() FROM i") is ON_PRIMARY
            assert await _where(conn, "SELECT nextval('rw_seq'), pg_is_in_recovery()") is ON_PRIMARY
            assert await _where(conn, "SELECT pg_is_in_recovery() /* ; DELETE FROM rw */") is ON_REPLICA
            assert await _where(conn, "SELECT $$INSERT INTO rw$$, pg_is_in_recovery()") is ON_REPLICA
        finally:
            await conn.close()
        # An explicit transaction stays on the primary from BEGIN to COMMIT, reads included.
        tx = await psycopg.AsyncConnection.connect(
            f"host=127.0.0.1 port={plane.port} user=postgres dbname=postgres")
        try:
            async with tx.transaction():
                assert await _where(tx, "SELECT pg_is_in_recovery()") is ON_PRIMARY
                await tx.execute("INSERT INTO rw VALUES (3)")
                assert await _where(tx, "SELECT pg_is_in_recovery()") is ON_PRIMARY
        finally:
            await tx.close()
        # Simple-query multi-statement strings: all reads may go to the replica; one write keeps all on the primary.
        code, out, err = await psql(plane.port, "postgres", "SELECT 1; SELECT pg_is_in_recovery()", "postgres", "-At")
        assert (code, out.split()) == (0, ["1", "t"]), err
        code, out, err = await psql(plane.port, "postgres", "SELECT pg_is_in_recovery(); INSERT INTO rw VALUES (4)",
                                    "postgres", "-At")
        assert (code, out.split()[0]) == (0, "f"), err
    assert pg_cluster.primary.execute("SELECT count(*) FROM rw") == "4"


async def test_hints_and_set_nexus_role(pg_cluster: PostgresCluster) -> None:
    pg_cluster.primary.execute(
        "CREATE OR REPLACE FUNCTION report_total() RETURNS int LANGUAGE sql AS 'SELECT 42'")
    pg_cluster.wait_caught_up()
    async with running_plane(routed_section(pg_cluster)) as plane:
        conn = await _connect(plane.port)
        try:
            assert await _where(conn, "/* nexus:primary */ SELECT pg_is_in_recovery()") is ON_PRIMARY
            # an unknown function keeps a SELECT on the primary, unless a replica hint vouches for it
            assert await _where(conn, "SELECT report_total(), pg_is_in_recovery()") is ON_PRIMARY
            assert await _where(conn, "/* nexus:replica */ SELECT report_total(), pg_is_in_recovery()") is ON_REPLICA
            await conn.execute("SET nexus.role = 'primary'")
            assert await _where(conn, "SELECT pg_is_in_recovery()") is ON_PRIMARY
            await conn.execute("SET nexus.role TO replica")
            assert await _where(conn, "SELECT report_total(), pg_is_in_recovery()") is ON_REPLICA
            await conn.execute("SET nexus.role = 'auto'")
            assert await _where(conn, "SELECT pg_is_in_recovery()") is ON_REPLICA
            # The proxy answered those SETs itself: no server ever saw nexus.role.
            await conn.execute("SET nexus.role = 'primary'")
            cur = await conn.execute("SELECT current_setting('nexus.role', true), pg_is_in_recovery()")
            assert await cur.fetchone() in ((None, False), ("", False))
            with pytest.raises(psycopg.Error, match=r"invalid value for nexus\.role"):
                await conn.execute("SET nexus.role = 'sideways'")
            assert await _where(conn, "SELECT pg_is_in_recovery()") is ON_PRIMARY  # the bad SET changed nothing
        finally:
            await conn.close()


async def test_read_only_functions_from_the_config_may_go_to_the_replica(pg_cluster: PostgresCluster) -> None:
    pg_cluster.primary.execute(
        "CREATE OR REPLACE FUNCTION report_total() RETURNS int LANGUAGE sql AS 'SELECT 42'")
    pg_cluster.wait_caught_up()
    async with running_plane({**routed_section(pg_cluster), "read_only_functions": ["report_total"]}) as plane:
        conn = await _connect(plane.port)
        try:
            assert await _where(conn, "SELECT report_total(), pg_is_in_recovery()") is ON_REPLICA
        finally:
            await conn.close()


async def test_read_your_writes_window(pg_cluster: PostgresCluster) -> None:
    pg_cluster.primary.execute("CREATE TABLE IF NOT EXISTS ryw (x int)")
    pg_cluster.wait_caught_up()
    async with running_plane(routed_section(pg_cluster, read_your_writes="1s")) as plane:
        writer, other = await _connect(plane.port), await _connect(plane.port)
        try:
            await writer.execute("INSERT INTO ryw VALUES (1)")
            assert await _where(writer, "SELECT count(*), pg_is_in_recovery() FROM ryw") is ON_PRIMARY
            assert await _where(other, "SELECT pg_is_in_recovery()") is ON_REPLICA
            await asyncio.sleep(1.1)
            assert await _where(writer, "SELECT pg_is_in_recovery()") is ON_REPLICA
        finally:
            await writer.close()
            await other.close()


async def test_a_lagging_replica_is_taken_out_and_comes_back(pg_cluster: PostgresCluster) -> None:
    pg_cluster.primary.execute("CREATE TABLE IF NOT EXISTS lagged (x int)")
    pg_cluster.wait_caught_up()
    async with running_plane(routed_section(pg_cluster, max_replica_lag="1s")) as plane:
        conn = await _connect(plane.port)
        try:
            assert await _where(conn, "SELECT pg_is_in_recovery()") is ON_REPLICA
            await asyncio.to_thread(pg_cluster.pause_replay)
            await asyncio.to_thread(pg_cluster.primary.execute, "INSERT INTO lagged VALUES (1)")
            taken_out = await _until(lambda: _where(conn, "SELECT pg_is_in_recovery()"), ON_PRIMARY, 6.0)
            assert taken_out < 4.0  # the bound (1 s) plus a few polls
            code, out, err = await psql(plane.port, "pgbouncer", "SHOW ROUTING", "postgres", "-At", "-F", ",")
            assert code == 0, err
            replica_row = next(line for line in out.splitlines() if ",replica," in line)
            assert ",0," in replica_row and "replica lag" in replica_row
            await asyncio.to_thread(pg_cluster.resume_replay)
            await _until(lambda: _where(conn, "SELECT pg_is_in_recovery()"), ON_REPLICA, 6.0)
            # and the replica now has the row written while it lagged
            assert await _where(conn, "SELECT count(*), pg_is_in_recovery() FROM lagged") is ON_REPLICA
        finally:
            await conn.close()


async def _until(probe: Any, expected: bool, timeout: float) -> float:
    start = time.monotonic()
    while True:
        if await probe() is expected:
            return time.monotonic() - start
        if time.monotonic() - start > timeout:
            raise AssertionError(f"not {expected} after {timeout}s")
        await asyncio.sleep(0.05)


async def test_session_mode_keeps_sessions_on_the_primary(pg_cluster: PostgresCluster) -> None:
    async with running_plane({**routed_section(pg_cluster), "pool_mode": "session"}) as plane:
        conn = await _connect(plane.port)
        try:
            assert await _where(conn, "SELECT pg_is_in_recovery()") is ON_PRIMARY
            await conn.execute("CREATE TEMP TABLE scratch (x int)")  # the session may write later: it can
        finally:
            await conn.close()
        hinted = await _connect(plane.port)
        try:
            assert await _where(hinted, "/* nexus:replica */ SELECT pg_is_in_recovery()") is ON_REPLICA
            assert await _where(hinted, "SELECT pg_is_in_recovery()") is ON_REPLICA  # the whole session
        finally:
            await hinted.close()


_STANDBY_READS = [
    "SELECT * FROM judged WHERE id = 1",
    "SELECT count(*), max(a), string_agg(b, ',') FROM judged",
    "WITH x AS (SELECT a FROM judged) SELECT sum(a) FROM x",
    "SELECT lower(b), now(), random() FROM judged",
    "SELECT * FROM generate_series(1, 3) g(n) JOIN judged ON judged.id = g.n",
    "TABLE judged",
    "VALUES (1), (2)",
    "SHOW search_path",
    "EXPLAIN SELECT * FROM judged",
    "SELECT pg_is_in_recovery(), pg_last_wal_replay_lsn()",
    "SELECT $$ DELETE FROM judged $$, 'UPDATE judged SET a = 1'",
]
_STANDBY_REFUSES = [
    "INSERT INTO judged VALUES (9, 9, 'x')",
    "UPDATE judged SET a = 2",
    "DELETE FROM judged",
    "SELECT * FROM judged FOR UPDATE",
    "SELECT * FROM judged FOR SHARE",
    "WITH d AS (DELETE FROM judged RETURNING *) SELECT count(*) FROM d",
    "SELECT nextval('judged_seq')",
    "SELECT setval('judged_seq', 5)",
    "SELECT txid_current()",
    "SELECT 1 INTO judged_copy",
    "CREATE TABLE judged2 (x int)",
    "TRUNCATE judged",
    "LOCK TABLE judged",
    "SELECT pg_current_wal_lsn()",
]


async def test_the_classifier_agrees_with_a_real_hot_standby(pg_cluster: PostgresCluster) -> None:
    """What the classifier sends to replicas runs on a hot standby; what it keeps on the primary, the standby refuses."""
    from nexus_fast.postgres.sql_classify import classify

    pg_cluster.primary.execute(
        "DROP TABLE IF EXISTS judged; CREATE TABLE judged (id int, a int, b text); INSERT INTO judged VALUES (1, 1, 'a');"
        "DROP SEQUENCE IF EXISTS judged_seq; CREATE SEQUENCE judged_seq")
    pg_cluster.wait_caught_up()
    standby = await psycopg.AsyncConnection.connect(pg_cluster.standby.conninfo(), autocommit=True)
    try:
        for sql in _STANDBY_READS:
            assert classify(sql).read_only, sql
            await standby.execute(sql)  # raises if the standby refuses it
        for sql in _STANDBY_REFUSES:
            assert not classify(sql).read_only, sql
            try:
                await standby.execute(sql)
            except psycopg.Error as exc:
                # 25006 read_only_sql_transaction; 55000 object_not_in_prerequisite_state (WAL control functions)
                assert exc.sqlstate in ("25006", "55000"), (sql, exc.sqlstate, str(exc))
            else:
                raise AssertionError(f"the standby ran {sql!r}")
    finally:
        await standby.close()
