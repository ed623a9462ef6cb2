"""Server authentication (md5, SCRAM, SCRAM pass-through) and TLS towards servers; PostgreSQL restarted or
stopped under load; server connections terminated while pooled."""

from __future__ import annotations

import asyncio
import time

import asyncpg
import pytest

from tests.faults.postgres.conftest import MD5_PASSWORD, MD5_USER, SCRAM_PASSWORD, SCRAM_USER


def _dsn(plane, user: str = "postgres", password: str | None = None) -> str:
    auth = f"{user}:{password}" if password else user
    return f"postgresql://{auth}@127.0.0.1:{plane.port}/postgres"


@pytest.mark.parametrize("sslmode", ["disable", "require"])
async def test_server_auth_md5_and_scram(node_plane, sslmode):
    plane = await node_plane(
        server_tls_sslmode=sslmode,
        users={MD5_USER: {"password": MD5_PASSWORD}, SCRAM_USER: {"password": SCRAM_PASSWORD}},
    )
    for user in (MD5_USER, SCRAM_USER):
        conn = await asyncpg.connect(_dsn(plane, user))
        try:
            assert await conn.fetchval("SELECT current_user") == user
            ssl_on = await conn.fetchval("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()")
            assert ssl_on is (sslmode == "require")
        finally:
            await conn.close()


async def test_server_auth_wrong_password_is_reported(node_plane):
    plane = await node_plane(users={SCRAM_USER: {"password": "wrong"}})
    with pytest.raises(asyncpg.PostgresError, match="password authentication failed"):
        await asyncpg.connect(_dsn(plane, SCRAM_USER))


async def test_scram_pass_through_from_auth_query(node_plane):
    # The proxy never learns the password: auth_query gives the SCRAM secret, the client's proof gives the
    # ClientKey, and that logs in to the backend (which demands SCRAM for this role).
    plane = await node_plane(auth_type="scram-sha-256", auth_user="postgres")
    conn = await asyncpg.connect(_dsn(plane, SCRAM_USER, SCRAM_PASSWORD))
    try:
        assert await conn.fetchval("SELECT current_user") == SCRAM_USER
    finally:
        await conn.close()


async def _load(plane, stop: asyncio.Event, results: dict) -> None:
    conn = None
    while not stop.is_set():
        try:
            if conn is None or conn.is_closed():
                conn = await asyncio.wait_for(asyncpg.connect(_dsn(plane)), 10)
            await asyncio.wait_for(conn.fetchval("SELECT count(*) FROM f"), 10)
            results["ok"] += 1
        except TimeoutError:
            results["hang"] += 1
            if conn is not None:
                conn.terminate()
                conn = None
        except (asyncpg.PostgresError, asyncpg.InterfaceError, asyncpg.InternalClientError, OSError) as exc:
            results["errors"] += 1
            results["last"] = repr(exc)
            if conn is not None:
                conn.terminate()
                conn = None
            await asyncio.sleep(0.05)
    if conn is not None:
        await conn.close()


@pytest.mark.parametrize("how", ["restart", "kill"])
async def test_postgres_restarted_under_load(node_plane, pg_node, how):
    plane = await node_plane(default_pool_size=3, retry_backoff_base="50ms", connect_retries=5)
    stop = asyncio.Event()
    results = {"ok": 0, "errors": 0, "hang": 0, "last": ""}
    workers = [asyncio.create_task(_load(plane, stop, results)) for _ in range(6)]
    await asyncio.sleep(0.5)
    before = results["ok"]
    assert before > 0
    if how == "restart":
        await asyncio.to_thread(pg_node.restart, "fast")
    else:
        await asyncio.to_thread(pg_node.kill)
        await asyncio.to_thread(pg_node.start)
    mark = results["ok"]
    deadline = time.monotonic() + 10
    while results["ok"] < mark + 30 and time.monotonic() < deadline:
        await asyncio.sleep(0.1)
    stop.set()
    await asyncio.wait_for(asyncio.gather(*workers), 15)
    assert results["hang"] == 0
    assert results["ok"] >= mark + 30, results  # the pool recovered
    stats = next(iter(plane.pools.values())).stats
    assert stats.servers_closed_dead >= 1 or results["errors"] >= 1


async def test_server_down_fails_fast_then_recovers(node_plane, pg_node):
    plane = await node_plane(connect_retries=2, retry_backoff_base="50ms", retry_backoff_max="200ms")
    conn = await asyncpg.connect(_dsn(plane))
    await conn.close()
    await asyncio.to_thread(pg_node.stop, "fast")
    try:
        start = time.monotonic()
        with pytest.raises((asyncpg.PostgresError, asyncpg.InterfaceError, OSError)):
            c = await asyncpg.connect(_dsn(plane))
            try:
                await c.fetchval("SELECT 1")
            finally:
                await c.close()
        assert time.monotonic() - start < 8
        pool = next(iter(plane.pools.values()))
        assert pool.stats.connect_failures >= 1
    finally:
        await asyncio.to_thread(pg_node.start)
    conn = await asyncpg.connect(_dsn(plane))
    try:
        assert await conn.fetchval("SELECT 1") == 1
    finally:
        await conn.close()


async def test_terminated_idle_server_is_replaced(node_plane, pg_node):
    plane = await node_plane(default_pool_size=1)
    conn = await asyncpg.connect(_dsn(plane))
    try:
        pid = await conn.fetchval("SELECT pg_backend_pid()")
        await asyncio.to_thread(pg_node.execute, f"SELECT pg_terminate_backend({pid})")
        await asyncio.sleep(0.3)
        pool = next(iter(plane.pools.values()))
        assert pool.stats.servers_closed_dead == 1
        assert await conn.fetchval("SELECT pg_backend_pid()") != pid
    finally:
        await conn.close()


async def test_server_check_query_after_delay(node_plane):
    plane = await node_plane(default_pool_size=1, server_check_delay="100ms")
    conn = await asyncpg.connect(_dsn(plane))
    try:
        await conn.fetchval("SELECT 1")
        await asyncio.sleep(0.3)
        assert await conn.fetchval("SELECT 2") == 2
        pool = next(iter(plane.pools.values()))
        assert pool.stats.sv_tested >= 1
    finally:
        await conn.close()


async def test_server_tls_verify_ca(node_plane, pg_node, tmp_path):
    import os

    cert = os.path.join(pg_node.data_dir, "server.crt")
    plane = await node_plane(server_tls_sslmode="verify-ca", server_tls_ca_file=cert)
    conn = await asyncpg.connect(_dsn(plane))
    try:
        assert await conn.fetchval("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()") is True
    finally:
        await conn.close()
    # A CA that did not sign the server's certificate: the server connection is refused.
    from tests.faults.postgres.conftest import _self_signed

    other_dir = tmp_path / "other"
    other_dir.mkdir()
    other_cert, _ = _self_signed(str(other_dir))
    bad = await node_plane(server_tls_sslmode="verify-ca", server_tls_ca_file=other_cert, connect_retries=0)
    with pytest.raises((asyncpg.PostgresError, asyncpg.InterfaceError, OSError)):
        c = await asyncpg.connect(_dsn(bad))
        try:
            await c.fetchval("SELECT 1")
        finally:
            await c.close()
