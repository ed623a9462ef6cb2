"""Drop-in: the plane serves from a pgbouncer.ini + userlist.txt as PgBouncer would (psql through it, console)."""

from __future__ import annotations

from pathlib import Path

from nexus_fast._testing.ports import free_port, system_postgres_address
from nexus_fast._testing.postgres_fixtures import psql
from nexus_fast.config.load import load_config
from nexus_fast.observe.metrics import Metrics
from nexus_fast.postgres.plane import create_plane


async def test_serve_from_pgbouncer_ini(tmp_path: Path) -> None:
    host, port = system_postgres_address()
    listen_port = free_port()
    (tmp_path / "userlist.txt").write_text('"postgres" ""\n"watcher" ""\n')
    (tmp_path / "pgbouncer.ini").write_text(
        "[databases]\n"
        f"appdb = host={host} port={port} dbname=test pool_size=3\n"
        f"* = host={host} port={port}\n"
        "[pgbouncer]\n"
        "listen_addr = 127.0.0.1\n"
        f"listen_port = {listen_port}\n"
        "auth_type = trust\n"
        "auth_file = userlist.txt\n"
        "admin_users = postgres\n"
        "stats_users = watcher\n"
        "pool_mode = transaction\n"
        "server_idle_timeout = 60\n"
        "logfile = /dev/null\n"
    )
    loaded = load_config(str(tmp_path / "pgbouncer.ini"))
    assert any(w.startswith("pgbouncer.logfile") for w in loaded.warnings)
    plane = create_plane(loaded.config, Metrics())
    await plane.start()
    try:
        code, out, err = await psql(listen_port, "appdb", "SELECT current_database()", "postgres", "-At")
        assert (code, out.strip()) == (0, "test"), err
        code, out, err = await psql(listen_port, "postgres", "SELECT 1", "postgres", "-At")  # via the * fallback
        assert (code, out.strip()) == (0, "1"), err
        code, out, err = await psql(listen_port, "pgbouncer", "SHOW DATABASES", "watcher", "-At", "-F", ",")
        assert code == 0, err
        assert f"appdb,{host},{port},test,,3,0,0,,0," in out
        code, out, err = await psql(listen_port, "pgbouncer", "SHOW CONFIG", "watcher", "-At", "-F", ",")
        assert "server_idle_timeout,60,600,yes" in out.splitlines()
    finally:
        await plane.close()
