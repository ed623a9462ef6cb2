"""The admin console through the real plane: psql and exporter-style clients, PgBouncer's exact columns, commands."""

from __future__ import annotations

import asyncio
import re

import psycopg
import pytest

from nexus_fast._testing.peers import start_pgbouncer
from nexus_fast._testing.ports import system_postgres_address
from nexus_fast._testing.postgres_fixtures import psql, running_plane

SHOWS = ["POOLS", "STATS", "STATS_TOTALS", "STATS_AVERAGES", "TOTALS", "CLIENTS", "SERVERS", "DATABASES",
         "USERS", "CONFIG", "VERSION", "LISTS"]


def _section(**extra: object) -> dict[str, object]:
    host, port = system_postgres_address()
    return {"admin_users": ["postgres"], "stats_users": ["watcher"], "pool_mode": "transaction",
            "databases": {"test": {"servers": [{"host": host, "port": port}]}}, **extra}


async def _console(port: int, user: str = "postgres") -> psycopg.AsyncConnection:
    # The simple query protocol, as PgBouncer's console requires (psycopg's client-side-binding cursor).
    return await psycopg.AsyncConnection.connect(
        f"host=127.0.0.1 port={port} user={user} dbname=pgbouncer", autocommit=True,
        cursor_factory=psycopg.AsyncClientCursor)


async def _show(conn: psycopg.AsyncConnection, what: str) -> tuple[list[tuple[str, int]], list[tuple]]:
    cur = conn.cursor()
    await cur.execute(f"SHOW {what}")
    assert cur.description is not None
    columns = [(d.name, d.type_code) for d in cur.description]
    return columns, await cur.fetchall()


async def test_show_columns_and_types_match_a_running_pgbouncer() -> None:
    peer = await asyncio.to_thread(start_pgbouncer, system_postgres_address())
    try:
        async with running_plane(_section()) as plane:
            ours, theirs = await _console(plane.port), await _console(peer.port)
            try:
                for what in SHOWS:
                    our_columns, _ = await _show(ours, what)
                    their_columns, _ = await _show(theirs, what)
                    assert our_columns == their_columns, what
            finally:
                await ours.close()
                await theirs.close()
    finally:
        await asyncio.to_thread(peer.stop)


async def test_psql_shows_pools_servers_clients_and_stats() -> None:
    async with running_plane(_section()) as plane:
        app = await psycopg.AsyncConnection.connect(f"host=127.0.0.1 port={plane.port} user=postgres dbname=test",
                                                    autocommit=True)
        try:
            cur = await app.execute("SELECT pg_backend_pid()")
            row = await cur.fetchone()
            assert row is not None
            backend_pid = row[0]
            for _ in range(3):
                await app.execute("SELECT 1")
            code, out, err = await psql(plane.port, "pgbouncer", "SHOW POOLS", "postgres", "-A", "-F", ",")
            assert code == 0, err
            header, *rows = out.splitlines()
            assert header == ("database,user,cl_active,cl_waiting,cl_active_cancel_req,cl_waiting_cancel_req,"
                              "sv_active,sv_active_cancel,sv_being_canceled,sv_idle,sv_used,sv_tested,sv_login,"
                              "maxwait,maxwait_us,pool_mode")
            assert "test,postgres,1,0,0,0,0,0,0,1,0,0,0,0,0,transaction" in rows  # one client, one idle server
            code, out, err = await psql(plane.port, "nexus", "SHOW SERVERS", "postgres", "-A", "-F", ",", "-t")
            assert code == 0, err  # the alias database works too
            assert [line.split(",")[15] for line in out.splitlines() if line] == [str(backend_pid)]
            code, out, _ = await psql(plane.port, "pgbouncer", "SHOW CLIENTS", "postgres", "-A", "-F", ",", "-t")
            states = {line.split(",")[2]: line.split(",")[3] for line in out.splitlines() if line}
            assert states == {"test": "active", "pgbouncer": "active"}
            _, out, _ = await psql(plane.port, "pgbouncer", "SHOW STATS", "postgres", "-A", "-F", ",")
            header, *rows = out.splitlines()
            assert header.split(",")[:3] == ["database", "total_xact_count", "total_query_count"]
            test_row = next(r.split(",") for r in rows if r.startswith("test,"))
            assert int(test_row[2]) >= 4
            _, out, _ = await psql(plane.port, "pgbouncer", "SHOW DATABASES", "postgres", "-A", "-F", ",", "-t")
            assert any(line.startswith("test,127.0.0.1,") for line in out.splitlines())
        finally:
            await app.close()


async def test_exporter_style_scrape() -> None:
    """What pgbouncer_exporter does: SHOW VERSION to pick columns, then STATS, POOLS, DATABASES, LISTS, CONFIG."""
    async with running_plane(_section()) as plane:
        conn = await _console(plane.port, "watcher")  # a stats user is enough for SHOW
        try:
            _, version = await _show(conn, "VERSION")
            assert re.match(r"PgBouncer (\d+\.\d+\.\d+)", version[0][0])
            columns, rows = await _show(conn, "STATS")
            assert {"total_query_count", "avg_query_time", "total_wait_time"} <= {c for c, _ in columns}
            columns, rows = await _show(conn, "POOLS")
            assert [c for c, _ in columns][:4] == ["database", "user", "cl_active", "cl_waiting"]
            _, rows = await _show(conn, "LISTS")
            assert dict(rows)["databases"] == 2
            _, rows = await _show(conn, "CONFIG")
            config = {key: value for key, value, _default, _changeable in rows}
            assert config["max_client_conn"] == "10000"
            assert config["pool_mode"] == "transaction"
            cur = conn.cursor()
            with pytest.raises(psycopg.errors.InsufficientPrivilege, match="admin access needed"):
                await cur.execute("PAUSE")
        finally:
            await conn.close()


async def test_non_admin_users_cannot_open_the_console() -> None:
    async with running_plane(_section()) as plane:
        code, _out, err = await psql(plane.port, "pgbouncer", "SHOW POOLS", "mallory")
        assert code != 0
        assert "not allowed" in err


async def test_pause_waits_for_open_transactions_and_resume_releases_waiting_clients() -> None:
    async with running_plane(_section()) as plane:
        dsn = f"host=127.0.0.1 port={plane.port} user=postgres dbname=test"
        busy = await psycopg.AsyncConnection.connect(dsn)
        console = await _console(plane.port)
        late = await psycopg.AsyncConnection.connect(dsn, autocommit=True)
        try:
            await busy.execute("SELECT 1")  # a transaction is open (psycopg does not autocommit)
            pause = asyncio.create_task(console.execute("PAUSE"))
            await asyncio.sleep(0.3)
            assert not pause.done()  # PAUSE waits for the open transaction
            await busy.commit()
            await asyncio.wait_for(pause, 5)
            _, rows = await _show(console, "DATABASES")
            assert next(r for r in rows if r[0] == "test")[11] == 1  # paused
            query = asyncio.create_task(late.execute("SELECT 42"))
            await asyncio.sleep(0.3)
            assert not query.done()  # paused: new work waits
            await console.execute("RESUME")
            cur = await asyncio.wait_for(query, 5)
            assert await cur.fetchone() == (42,)
        finally:
            for conn in (busy, console, late):
                await conn.close()


async def test_kill_drops_the_database_clients_until_resume() -> None:
    async with running_plane(_section()) as plane:
        dsn = f"host=127.0.0.1 port={plane.port} user=postgres dbname=test"
        victim = await psycopg.AsyncConnection.connect(dsn, autocommit=True)
        console = await _console(plane.port)
        try:
            await victim.execute("SELECT 1")
            await console.execute("KILL test")
            with pytest.raises(psycopg.OperationalError):
                await victim.execute("SELECT 1")
            _, rows = await _show(console, "DATABASES")
            assert next(r for r in rows if r[0] == "test")[11] == 1  # paused
            await console.execute("RESUME test")
            fresh = await psycopg.AsyncConnection.connect(dsn, autocommit=True)
            cur = await fresh.execute("SELECT 7")
            assert await cur.fetchone() == (7,)
            await fresh.close()
        finally:
            await victim.close()
            await console.close()
