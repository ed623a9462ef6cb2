"""Real clients through the proxy: psql, pgbench (simple/extended/prepared), asyncpg and psycopg 3, in session and
transaction modes; prepared statements with more clients than server connections; COPY; cancel; LISTEN/NOTIFY."""

from __future__ import annotations

import asyncio
import time

import asyncpg
import psycopg
import pytest

from tests.integration.postgres.conftest import DB, direct_conn, run


def _dsn(plane, user: str = "postgres", password: str | None = None) -> str:
    auth = f"{user}:{password}" if password else user
    return f"postgresql://{auth}@127.0.0.1:{plane.port}/{DB}"


@pytest.mark.parametrize("mode", ["session", "transaction"])
async def test_psql(make_plane, mode):
    plane = await make_plane(pool_mode=mode)
    rc, out, err = await run("psql", "-X", "-At", "-h", "127.0.0.1", "-p", str(plane.port), "-U", "postgres", DB,
                             "-c", "select 40 + 2", "-c", "begin; select 'in'; commit;", "-c", "select 'a' || 'b'")
    assert rc == 0, err
    assert out.split() == ["42", "BEGIN", "in", "COMMIT", "ab"] or out.split() == ["42", "in", "ab"]


@pytest.mark.parametrize("mode", ["session", "transaction"])
@pytest.mark.parametrize("protocol", ["simple", "extended", "prepared"])
async def test_pgbench(make_plane, mode, protocol):
    # pgbench prepares with a blocking PQprepare, so in session mode (servers held for the whole session) it needs a
    # server per client; transaction mode serves 6 clients with 2 servers.
    plane = await make_plane(pool_mode=mode, default_pool_size=6 if mode == "session" else 2)
    rc, out, err = await run("pgbench", "-n", "-h", "127.0.0.1", "-p", str(plane.port), "-U", "postgres",
                             "-M", protocol, "-c", "6", "-t", "15", "-S", DB, timeout=30)
    assert rc == 0, err + out
    assert "number of transactions actually processed: 90/90" in out
    assert "number of failed transactions: 0" in out


async def test_pgbench_tpcb_transaction_mode(make_plane):
    plane = await make_plane(default_pool_size=2)
    rc, out, err = await run("pgbench", "-n", "-h", "127.0.0.1", "-p", str(plane.port), "-U", "postgres",
                             "-M", "extended", "-c", "4", "-t", "10", DB)
    assert rc == 0, err + out
    assert "number of transactions actually processed: 40/40" in out


async def test_asyncpg_prepared_statements_transaction_mode_more_clients_than_servers(make_plane):
    plane = await make_plane(default_pool_size=2, max_prepared_statements=3)
    conns = [await asyncpg.connect(_dsn(plane)) for _ in range(10)]
    try:
        async def work(i: int, conn: asyncpg.Connection) -> int:
            total = 0
            stmt = await conn.prepare("SELECT $1::int * 2 + $2::int")
            for j in range(15):
                total += await stmt.fetchval(j, i)
                # Several distinct statements per client, more than max_prepared_statements: LRU eviction.
                total += await conn.fetchval(f"SELECT $1::int + {j % 5}", i)
                async with conn.transaction():
                    total += await conn.fetchval("SELECT count(*) FROM pgbench_branches WHERE bid = $1", 1)
            return total

        results = await asyncio.gather(*(work(i, c) for i, c in enumerate(conns)))
        for i, got in enumerate(results):
            expected = sum(j * 2 + i + i + (j % 5) + 1 for j in range(15))
            assert got == expected
        pool = next(iter(plane.pools.values()))
        assert pool.size() <= 2
        assert pool.stats.total_xact_count > 100
    finally:
        for conn in conns:
            await conn.close()


async def test_psycopg_prepared_statements_transaction_mode(make_plane):
    plane = await make_plane(default_pool_size=2)
    conns = [await psycopg.AsyncConnection.connect(_dsn(plane), prepare_threshold=0, autocommit=True)
             for _ in range(8)]
    try:
        async def work(i: int, conn: psycopg.AsyncConnection) -> list:
            out = []
            for j in range(10):
                cur = await conn.execute("SELECT %s::int + %s::int", (i, j), prepare=True)
                out.append((await cur.fetchone())[0])
                cur = await conn.execute("SELECT abalance FROM pgbench_accounts WHERE aid = %s", (j + 1,))
                assert (await cur.fetchone()) is not None
            async with conn.transaction():
                cur = await conn.execute("SELECT %s::text", (f"client{i}",))
                out.append((await cur.fetchone())[0])
            return out

        results = await asyncio.gather(*(work(i, c) for i, c in enumerate(conns)))
        for i, got in enumerate(results):
            assert got == [i + j for j in range(10)] + [f"client{i}"]
    finally:
        for conn in conns:
            await conn.close()


async def test_psycopg_and_asyncpg_session_mode(make_plane):
    plane = await make_plane(pool_mode="session", default_pool_size=2)
    conn = await psycopg.AsyncConnection.connect(_dsn(plane), prepare_threshold=0)
    try:
        await conn.execute("SET work_mem = '7MB'")
        cur = await conn.execute("SHOW work_mem")
        assert (await cur.fetchone())[0] == "7MB"
        await conn.commit()
    finally:
        await conn.close()
    aconn = await asyncpg.connect(_dsn(plane))
    try:
        # DISCARD ALL ran when the previous client left: its SET is gone on the (reused) server connection.
        assert await aconn.fetchval("SHOW work_mem") != "7MB"
        assert await aconn.fetchval("SELECT $1::text", "x") == "x"
    finally:
        await aconn.close()


async def test_copy_in_and_out(make_plane):
    plane = await make_plane()
    with direct_conn() as direct:
        direct.execute("DELETE FROM t WHERE id >= 5000 AND id < 6000")
    conn = await psycopg.AsyncConnection.connect(_dsn(plane), autocommit=True)
    try:
        async with conn.cursor() as cur:
            async with cur.copy("COPY t (id, v) FROM STDIN") as copy:
                for i in range(5000, 5200):
                    await copy.write_row((i, f"row {i}"))
            rows = []
            async with cur.copy("COPY (SELECT id, v FROM t WHERE id >= 5000 AND id < 6000 ORDER BY id) TO STDOUT") as copy:
                async for row in copy.rows():
                    rows.append(row)
        assert len(rows) == 200 and rows[0] == ("5000", "row 5000")
        cur = await conn.execute("SELECT count(*) FROM t WHERE id >= 5000 AND id < 6000")
        assert (await cur.fetchone())[0] == 200
    finally:
        await conn.close()
    aconn = await asyncpg.connect(_dsn(plane))
    try:
        await aconn.copy_records_to_table("t", records=[(i, "a") for i in range(5200, 5300)], columns=["id", "v"])
        assert await aconn.fetchval("SELECT count(*) FROM t WHERE id >= 5000 AND id < 6000") == 300
    finally:
        await aconn.close()


def _sleepers(marker: str) -> int:
    with direct_conn() as direct:
        row = direct.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE state = 'active' AND query LIKE %s AND pid <> pg_backend_pid()",
            (f"%{marker}%",),
        ).fetchone()
        return int(row[0]) if row else 0


async def _wait_no_sleepers(marker: str, timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if await asyncio.to_thread(_sleepers, marker) == 0:
            return True
        await asyncio.sleep(0.1)
    return False


@pytest.mark.parametrize("mode", ["session", "transaction"])
async def test_cancel_request(make_plane, mode):
    plane = await make_plane(pool_mode=mode)
    conn = await asyncpg.connect(_dsn(plane))
    try:
        start = time.monotonic()
        # asyncpg sends a CancelRequest (through the proxy) when the timeout expires.
        with pytest.raises(asyncio.TimeoutError):
            await conn.execute(f"SELECT pg_sleep(20) /* cancel-{mode} */", timeout=0.5)
        assert time.monotonic() - start < 5
        assert await _wait_no_sleepers(f"cancel-{mode}")
        assert await conn.fetchval("SELECT 1") == 1
    finally:
        await conn.close()


async def test_query_timeout_cancels_on_server(make_plane):
    plane = await make_plane(query_timeout="300ms")
    conn = await asyncpg.connect(_dsn(plane))
    try:
        start = time.monotonic()
        with pytest.raises(asyncpg.QueryCanceledError):
            await conn.execute("SELECT pg_sleep(20) /* qtimeout */")
        assert time.monotonic() - start < 5
        assert await _wait_no_sleepers("qtimeout")
        assert await conn.fetchval("SELECT 2") == 2
    finally:
        await conn.close()


async def test_listen_notify_session_mode(make_plane):
    plane = await make_plane(pool_mode="session")
    listener = await asyncpg.connect(_dsn(plane))
    sender = await asyncpg.connect(_dsn(plane))
    got: asyncio.Queue = asyncio.Queue()
    try:
        await listener.add_listener("nx_core_chan", lambda *args: got.put_nowait(args[3]))
        await sender.execute("NOTIFY nx_core_chan, 'hello'")
        assert await asyncio.wait_for(got.get(), 5) == "hello"
    finally:
        await listener.close()
        await sender.close()


async def test_client_killed_mid_transaction_leaves_no_state(make_plane):
    plane = await make_plane(default_pool_size=1)
    with direct_conn() as direct:
        direct.execute("DELETE FROM t WHERE id = 7777")
    a = await asyncpg.connect(_dsn(plane))
    pid_a = await a.fetchval("SELECT pg_backend_pid()")
    tx = a.transaction()
    await tx.start()
    await a.execute("INSERT INTO t VALUES (7777, 'uncommitted')")
    await a.execute("SET LOCAL statement_timeout = '1234ms'")
    a.terminate()  # the socket closes with the transaction open
    b = await asyncpg.connect(_dsn(plane))
    try:
        assert await b.fetchval("SELECT pg_backend_pid()") == pid_a  # the same (single) server connection
        assert await b.fetchval("SELECT count(*) FROM t WHERE id = 7777") == 0
        assert await b.fetchval("SHOW statement_timeout") == "0"
        assert await b.fetchval("SELECT txid_current_if_assigned()") is None
        # The row is not locked by a leftover transaction.
        await b.execute("INSERT INTO t VALUES (7777, 'ok')")
        await b.execute("DELETE FROM t WHERE id = 7777")
    finally:
        await b.close()


async def test_session_mode_temp_state_is_reset(make_plane):
    plane = await make_plane(pool_mode="session", default_pool_size=1)
    a = await asyncpg.connect(_dsn(plane))
    await a.execute("CREATE TEMP TABLE nx_tmp (x int)")
    await a.execute("BEGIN")
    a.terminate()
    b = await asyncpg.connect(_dsn(plane))
    try:
        assert await b.fetchval("SELECT to_regclass('pg_temp.nx_tmp') IS NULL")
    finally:
        await b.close()


async def test_psycopg_rollback_and_deallocate_in_transaction_mode(make_plane):
    # psycopg answers a ROLLBACK by forgetting its statements with DEALLOCATE ALL, and closes single ones with a
    # protocol Close; neither may destroy statements the proxy keeps on shared server connections.
    plane = await make_plane(default_pool_size=1)
    conns = [await psycopg.AsyncConnection.connect(_dsn(plane), prepare_threshold=0) for _ in range(3)]
    try:
        for round_ in range(3):
            for i, conn in enumerate(conns):
                cur = await conn.execute("SELECT %s::int * 3", (i,))
                assert (await cur.fetchone())[0] == i * 3
                await conn.rollback()
                cur = await conn.execute("SELECT %s::int * 3", (i + round_,))
                assert (await cur.fetchone())[0] == (i + round_) * 3
                await conn.commit()
        await conns[0].execute("DEALLOCATE ALL")
        await conns[0].commit()
        cur = await conns[1].execute("SELECT %s::int * 3", (5,))
        assert (await cur.fetchone())[0] == 15
        await conns[1].commit()
    finally:
        for conn in conns:
            await conn.close()
