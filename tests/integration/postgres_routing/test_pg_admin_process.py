"""The console's RELOAD and SHUTDOWN act on a real `nexus-fast serve` process (through the shell's hooks)."""

from __future__ import annotations

import subprocess
from typing import Any

from nexus_fast._testing.ports import system_postgres_address
from nexus_fast._testing.proxy import NexusProcess, free_listen


def _psql(port: int, database: str, sql: str) -> str:
    proc = subprocess.run(
        ["psql", "-X", "-h", "127.0.0.1", "-p", str(port), "-U", "postgres", "-d", database, "-At", "-F", ",",
         "-c", sql], capture_output=True, text=True, timeout=30, check=False)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def _config(listen: str, split: bool) -> dict[str, Any]:
    host, port = system_postgres_address()
    return {"postgres": {
        "listen": listen, "auth_type": "trust", "admin_users": ["postgres"], "replica_check_interval": "200ms",
        "databases": {"test": {"read_write_split": split, "servers": [
            {"host": host, "port": port, "role": "primary"}, {"host": host, "port": port, "role": "replica"}]}},
    }}


def _replica_reads(port: int) -> int:
    rows = [line.split(",") for line in _psql(port, "pgbouncer", "SHOW ROUTING").splitlines()]
    return int(next(r for r in rows if r[4] == "replica")[8])


def test_console_reload_applies_the_file_and_shutdown_stops_the_process() -> None:
    listen = free_listen()
    port = int(listen.rpartition(":")[2])
    nexus = NexusProcess(_config(listen, split=True), workers=1)
    with nexus:
        for _ in range(3):
            assert _psql(port, "test", "SELECT 1").strip() == "1"
        assert _replica_reads(port) == 3
        nexus.write_config({**_config(listen, split=False), "admin": {"listen": nexus.admin_listen}})
        assert _psql(port, "pgbouncer", "RELOAD").strip() == "RELOAD"  # the command tag
        nexus.wait_for_event("reload_applied")
        _psql(port, "test", "SELECT 1")
        assert _replica_reads(port) == 0  # split off: the read went to the primary
        subprocess.run(["psql", "-X", "-h", "127.0.0.1", "-p", str(port), "-U", "postgres", "-d", "pgbouncer",
                        "-c", "SHUTDOWN"], capture_output=True, timeout=30, check=False)
        assert nexus.wait(20) == 0
