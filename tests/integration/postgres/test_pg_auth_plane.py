"""Client authentication (trust, md5, SCRAM; TOML users, auth_file, auth_query), client TLS, and the plane's
limits, timeouts, health, metrics, reload and drain."""

from __future__ import annotations

import asyncio
import datetime
import ssl
import time

import asyncpg
import psycopg
import pytest

from nexus_fast.config.schema import NexusConfig
from nexus_fast.postgres.auth import md5_secret, scram_keys_from_password
from tests.integration.postgres.conftest import DB, MD5_USER, SCRAM_PASSWORD, SCRAM_USER, plane_config


def _dsn(plane, user: str = "postgres", password: str | None = None) -> str:
    auth = f"{user}:{password}" if password else user
    return f"postgresql://{auth}@127.0.0.1:{plane.port}/{DB}"


FORCED = {"databases": {DB: {"user": "postgres"}}}


@pytest.mark.parametrize("auth_type", ["md5", "scram-sha-256"])
@pytest.mark.parametrize("stored", ["plain", "md5", "scram"])
async def test_toml_users(make_plane, auth_type, stored):
    secret = {"plain": "pw1", "md5": md5_secret("alice", "pw1"), "scram": scram_keys_from_password("pw1").secret()}[stored]
    plane = await make_plane(auth_type=auth_type, users={"alice": {"password": secret}}, **FORCED)
    conn = await asyncpg.connect(_dsn(plane, "alice", "pw1"))
    try:
        assert await conn.fetchval("SELECT current_user") == "postgres"  # the forced backend user
    finally:
        await conn.close()
    with pytest.raises(asyncpg.InvalidPasswordError):
        await asyncpg.connect(_dsn(plane, "alice", "wrong"))
    with pytest.raises(asyncpg.InvalidPasswordError):
        await asyncpg.connect(_dsn(plane, "nobody", "pw1"))


async def test_auth_file_and_psycopg_scram(make_plane, tmp_path):
    path = tmp_path / "userlist.txt"
    path.write_text(f'"bob" "{scram_keys_from_password("b-pw").secret()}"\n"carol" "{md5_secret("carol", "c-pw")}"\n')
    plane = await make_plane(auth_type="scram-sha-256", auth_file=str(path), **FORCED)
    async with await psycopg.AsyncConnection.connect(_dsn(plane, "bob", "b-pw")) as conn:
        cur = await conn.execute("SELECT 1")
        assert (await cur.fetchone())[0] == 1
    # carol's secret is md5, so the SCRAM default falls back to md5 (as PgBouncer does)
    async with await psycopg.AsyncConnection.connect(_dsn(plane, "carol", "c-pw")) as conn:
        cur = await conn.execute("SELECT 2")
        assert (await cur.fetchone())[0] == 2
    with pytest.raises(psycopg.OperationalError, match="password authentication failed"):
        await psycopg.AsyncConnection.connect(_dsn(plane, "bob", "nope"))


async def test_auth_query(make_plane):
    plane = await make_plane(auth_type="scram-sha-256", auth_user="postgres")
    conn = await asyncpg.connect(_dsn(plane, SCRAM_USER, SCRAM_PASSWORD))
    try:
        assert await conn.fetchval("SELECT current_user") == SCRAM_USER
    finally:
        await conn.close()
    with pytest.raises(asyncpg.InvalidPasswordError):
        await asyncpg.connect(_dsn(plane, SCRAM_USER, "bad"))
    plane_md5 = await make_plane(auth_type="md5", auth_user="postgres")
    conn = await asyncpg.connect(_dsn(plane_md5, MD5_USER, "md5-pw"))
    try:
        assert await conn.fetchval("SELECT current_user") == MD5_USER
    finally:
        await conn.close()


async def test_trust_and_unknown_database(make_plane):
    plane = await make_plane()
    with pytest.raises(asyncpg.InvalidCatalogNameError):
        await asyncpg.connect(f"postgresql://postgres@127.0.0.1:{plane.port}/no_such_db")


@pytest.fixture(scope="module")
def tls_files(tmp_path_factory):
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
        .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=2))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost")]), critical=False)
        .sign(key, hashes.SHA256())
    )
    base = tmp_path_factory.mktemp("tls")
    cert_path, key_path = base / "server.crt", base / "server.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return str(cert_path), str(key_path)


async def test_client_tls_require(make_plane, tls_files):
    cert, key = tls_files
    plane = await make_plane(client_tls_sslmode="require", client_tls_cert_file=cert, client_tls_key_file=key)
    async with await psycopg.AsyncConnection.connect(_dsn(plane), sslmode="require") as conn:
        assert conn.pgconn.ssl_in_use
        cur = await conn.execute("SELECT 3")
        assert (await cur.fetchone())[0] == 3
    ctx = ssl.create_default_context(cafile=cert)
    conn2 = await asyncpg.connect(_dsn(plane).replace("127.0.0.1", "localhost"), ssl=ctx)
    try:
        assert await conn2.fetchval("SELECT 4") == 4
    finally:
        await conn2.close()
    with pytest.raises(psycopg.OperationalError, match="SSL required"):
        await psycopg.AsyncConnection.connect(_dsn(plane), sslmode="disable")


async def test_client_tls_disabled_refuses_sslrequest(make_plane):
    plane = await make_plane()
    with pytest.raises(psycopg.OperationalError):
        await psycopg.AsyncConnection.connect(_dsn(plane), sslmode="require")
    async with await psycopg.AsyncConnection.connect(_dsn(plane), sslmode="prefer") as conn:
        assert not conn.pgconn.ssl_in_use


async def test_max_client_conn(make_plane):
    plane = await make_plane(max_client_conn=2)
    a = await asyncpg.connect(_dsn(plane))
    b = await asyncpg.connect(_dsn(plane))
    try:
        with pytest.raises(asyncpg.TooManyConnectionsError):
            await asyncpg.connect(_dsn(plane))
    finally:
        await a.close()
        await b.close()


async def test_query_wait_timeout_and_reserve_pool(make_plane):
    plane = await make_plane(default_pool_size=1, query_wait_timeout="500ms")
    holder = await asyncpg.connect(_dsn(plane))
    other = await asyncpg.connect(_dsn(plane))
    try:
        tx = holder.transaction()
        await tx.start()
        start = time.monotonic()
        with pytest.raises((asyncpg.PostgresError, asyncpg.ConnectionDoesNotExistError)):
            await other.fetchval("SELECT 1")
        assert 0.4 < time.monotonic() - start < 3
        await tx.rollback()
    finally:
        await holder.close()
        await other.close()
    # With a reserve pool, the waiting client gets an extra connection after reserve_pool_timeout instead.
    plane2 = await make_plane(default_pool_size=1, reserve_pool_size=1, reserve_pool_timeout="200ms")
    holder = await asyncpg.connect(_dsn(plane2))
    other = await asyncpg.connect(_dsn(plane2))
    try:
        tx = holder.transaction()
        await tx.start()
        assert await asyncio.wait_for(other.fetchval("SELECT 5"), 3) == 5
        await tx.rollback()
    finally:
        await holder.close()
        await other.close()


async def test_idle_transaction_and_client_idle_timeouts(make_plane):
    plane = await make_plane(idle_transaction_timeout="300ms")
    conn = await asyncpg.connect(_dsn(plane))
    await conn.execute("BEGIN")
    await asyncio.sleep(0.8)
    with pytest.raises((asyncpg.PostgresError, asyncpg.InterfaceError, ConnectionError)):
        await conn.fetchval("SELECT 1")
    await conn.close()
    plane2 = await make_plane(client_idle_timeout="300ms")
    conn = await asyncpg.connect(_dsn(plane2))
    await asyncio.sleep(0.8)
    assert conn.is_closed() or await _fails(conn)
    await conn.close()


async def _fails(conn) -> bool:
    try:
        await conn.fetchval("SELECT 1")
    except (asyncpg.PostgresError, asyncpg.InterfaceError, ConnectionError):
        return True
    return False


async def test_check_health(make_plane):
    plane = await make_plane(databases={DB: {}, "broken": {"dbname": DB, "servers": [{"port": 1, "role": "primary"}]}})
    health = {h.name: h for h in await plane.check_health(2.0)}
    assert health[f"{DB}/primary"].healthy and health[f"{DB}/primary"].latency_ms is not None
    assert not health["broken/primary"].healthy and health["broken/primary"].reason


async def test_metrics_exposed(make_plane):
    plane = await make_plane()
    conn = await asyncpg.connect(_dsn(plane))
    try:
        for _ in range(5):
            await conn.fetchval("SELECT 1")
    finally:
        await conn.close()
    plane._export()
    text = plane.metrics.exposition().decode()
    assert f'nexus_postgres_query_seconds_count{{database="{DB}",server="127.0.0.1:5432",user="postgres"}}' in text
    assert "nexus_postgres_servers{" in text and "nexus_postgres_pool_bytes{" in text
    assert "nexus_postgres_pool_clients{" in text and "nexus_postgres_pool_wait_seconds_bucket{" in text


async def test_reload_keeps_unchanged_pools(make_plane):
    plane = await make_plane(default_pool_size=1)
    conn = await asyncpg.connect(_dsn(plane))
    try:
        pid = await conn.fetchval("SELECT pg_backend_pid()")
        new = plane_config(plane.port, {"default_pool_size": 1, "query_wait_timeout": "60s"})
        await plane.reload(new)
        assert await conn.fetchval("SELECT pg_backend_pid()") == pid
        await plane.reload(plane_config(plane.port, {"default_pool_size": 2}))
        assert await conn.fetchval("SELECT pg_backend_pid()") != pid
    finally:
        await conn.close()
    with pytest.raises(ValueError):
        await plane.reload(NexusConfig.model_validate({"postgres": {"listen": "127.0.0.1:1"}}))


async def test_drain_finishes_transactions(make_plane):
    plane = await make_plane()
    conn = await asyncpg.connect(_dsn(plane))
    idle = await asyncpg.connect(_dsn(plane))
    await conn.execute("BEGIN")
    plane.stop_accepting()
    drain = asyncio.create_task(plane.drain(5.0))
    await asyncio.sleep(0.3)
    assert not drain.done()
    assert await conn.fetchval("SELECT 6") == 6  # the open transaction still works
    await conn.execute("COMMIT")
    await asyncio.wait_for(drain, 3)
    assert not plane.sessions
    await conn.close()
    await idle.close()


async def test_statement_mode_refuses_transactions(make_plane):
    plane = await make_plane(pool_mode="statement", default_pool_size=1)
    conn = await asyncpg.connect(_dsn(plane))
    try:
        assert await conn.fetchval("SELECT 10") == 10
        assert await conn.fetchval("SELECT $1::int", 11) == 11
        # The proxy closes the client with "transaction blocks not allowed in statement pooling mode".
        with pytest.raises((asyncpg.PostgresError, asyncpg.InterfaceError, asyncpg.InternalClientError)):
            await conn.execute("BEGIN")
            await conn.fetchval("SELECT 1")
        assert next(iter(plane.pools.values())).size() <= 1
    finally:
        await conn.close()


async def test_min_pool_size_and_idle_timeout(make_plane):
    plane = await make_plane(min_pool_size=2, server_idle_timeout="1s")
    conn = await asyncpg.connect(_dsn(plane))
    await conn.close()
    pool = next(iter(plane.pools.values()))
    await pool.maintain()
    assert pool.size() == 2 and len(pool.idle) == 2  # kept open although idle


async def test_unix_socket_and_startup_parameters(make_plane, tmp_path):
    plane = await make_plane(unix_socket_dir=str(tmp_path), application_name_add_host=True)
    async with await psycopg.AsyncConnection.connect(host=str(tmp_path), port=plane.port, user="postgres", dbname=DB,
                                                      application_name="app") as conn:
        cur = await conn.execute("SHOW application_name")
        assert (await cur.fetchone())[0].startswith("app - ")
    with pytest.raises(psycopg.OperationalError, match="unsupported startup parameter: options"):
        await psycopg.AsyncConnection.connect(_dsn(plane), options="-c geqo=off")


async def test_max_user_connections(make_plane):
    plane = await make_plane(default_pool_size=5, query_wait_timeout="400ms", users={"postgres": {"max_user_connections": 1}})
    a = await asyncpg.connect(_dsn(plane))
    b = await asyncpg.connect(_dsn(plane))
    try:
        tx = a.transaction()
        await tx.start()
        with pytest.raises((asyncpg.PostgresError, asyncpg.InterfaceError)):
            await b.fetchval("SELECT 1")
        await tx.rollback()
    finally:
        await a.close()
        await b.close()


class _ReplicaFirstRouter:
    """Routes reads to the replica until told it failed (the real router's ban), then to the primary."""

    def __init__(self) -> None:
        self.failed: list[int] = []

    def route(self, sql, client_state):
        from nexus_fast.postgres.route import RouteDecision

        if sql.lstrip().upper().startswith("SELECT") and 1 not in self.failed:
            return RouteDecision("replica", 1)
        return RouteDecision("primary", 0)

    def on_server_error(self, server_index, reason):
        self.failed.append(server_index)


async def test_read_rerouted_when_replica_unreachable(make_plane):
    from nexus_fast._testing.ports import free_port

    plane = await make_plane(
        connect_retries=0,
        databases={DB: {"servers": [{"port": 5432, "role": "primary"}, {"port": free_port(), "role": "replica"}]}},
    )
    router = _ReplicaFirstRouter()
    await plane.routers[DB].close()  # stop the real router's replica monitor before replacing it
    plane.routers[DB] = router
    conn = await asyncpg.connect(_dsn(plane))
    try:
        start = time.monotonic()
        for _ in range(3):
            assert await conn.fetchval("SELECT pg_is_in_recovery()") is False
        assert time.monotonic() - start < 5
        assert router.failed == [1]  # the replica was tried once, then the read went to the primary
    finally:
        await conn.close()


async def test_max_db_connections(make_plane):
    plane = await make_plane(default_pool_size=5, max_db_connections=1, query_wait_timeout="400ms",
                             databases={DB: {"user": "postgres"}})
    a = await asyncpg.connect(_dsn(plane))
    b = await asyncpg.connect(_dsn(plane, "someone_else"))  # another pool of the same database
    try:
        tx = a.transaction()
        await tx.start()
        with pytest.raises((asyncpg.PostgresError, asyncpg.InterfaceError)):
            await b.fetchval("SELECT 1")
        await tx.rollback()
    finally:
        await a.close()
        await b.close()
