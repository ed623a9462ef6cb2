"""The process shell with the real data planes: PostgreSQL console RELOAD/SHUTDOWN reach every worker, SIGHUP
applies a changed [postgres] key, and SIGTERM lets a running query through the PostgreSQL plane finish."""

from __future__ import annotations

import subprocess
import threading
import time

import pytest

from nexus_fast._testing.ports import system_postgres_address
from nexus_fast._testing.proxy import NexusProcess, free_listen


def pg_config(listen: str, **extra: object) -> dict:
    host, port = system_postgres_address()
    return {"server": {"shutdown_timeout": "10s"},
            "postgres": {"listen": listen, "auth_type": "trust", **extra,
                         "databases": {"test": {"servers": [{"host": host, "port": port}]}}}}


def psql(listen: str, sql: str, db: str = "test", user: str = "postgres") -> subprocess.CompletedProcess[str]:
    host, _, port = listen.rpartition(":")
    return subprocess.run(["psql", "-X", "-A", "-t", "-h", host, "-p", port, "-U", user, "-d", db, "-c", sql],
                          capture_output=True, text=True, timeout=30, env={"PGCONNECT_TIMEOUT": "5", "PATH": "/usr/bin:/bin"})


@pytest.mark.parametrize("workers", [1, 2])
def test_console_reload_and_shutdown_reach_every_worker(workers: int) -> None:
    listen = free_listen()
    with NexusProcess(pg_config(listen), workers=workers) as nexus:
        if workers > 1:
            nexus.wait_for_event("worker_ready", count=workers)
        assert psql(listen, "SELECT 41 + 1").stdout.strip() == "42"
        result = psql(listen, "RELOAD", db="pgbouncer", user="admin")
        assert result.returncode == 0 and "RELOAD" in result.stdout, result.stderr
        assert len(nexus.wait_for_event("reload_applied", count=workers)) == workers
        result = psql(listen, "SHUTDOWN", db="pgbouncer", user="admin")
        assert result.returncode == 0, result.stderr
        assert nexus.wait(20) == 0, nexus.logs


def test_sighup_applies_a_changed_postgres_key() -> None:
    listen = free_listen()
    with NexusProcess(pg_config(listen, default_pool_size=5)) as nexus:
        assert psql(listen, "SELECT 1").stdout.strip() == "1"
        config = pg_config(listen, default_pool_size=7)
        config["admin"] = {"listen": nexus.admin_listen, "health_check_interval": "500ms"}
        nexus.write_config(config)
        nexus.reload()
        nexus.wait_for_event("reload_applied")
        status, body = nexus.get("/config")
        assert status == 200 and body["config"]["postgres"]["default_pool_size"] == 7
        shown = psql(listen, "SHOW CONFIG", db="pgbouncer", user="admin").stdout
        assert any(line.split("|")[:2] == ["default_pool_size", "7"] for line in shown.splitlines()), shown
        assert psql(listen, "SELECT 2").stdout.strip() == "2"


def test_sigterm_lets_a_running_query_finish() -> None:
    listen = free_listen()
    with NexusProcess(pg_config(listen)) as nexus:
        result: list[subprocess.CompletedProcess[str]] = []
        runner = threading.Thread(target=lambda: result.append(psql(listen, "SELECT pg_sleep(1.5), 'drained'")))
        runner.start()
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:  # wait until the query is running on the server
            active = subprocess.run(["psql", "-X", "-A", "-t", "-h", "127.0.0.1", "-U", "postgres", "-d", "test", "-c",
                                     "SELECT count(*) FROM pg_stat_activity WHERE query LIKE 'SELECT pg_sleep(1.5)%'"],
                                    capture_output=True, text=True, timeout=10).stdout.strip()
            if active == "1":
                break
            time.sleep(0.05)
        nexus.signal(15)
        code = nexus.wait(20)
        runner.join(20)
        assert code == 0, nexus.logs
        assert result and result[0].returncode == 0, (result[0].stderr if result else "no result", nexus.logs)
        assert "drained" in result[0].stdout
