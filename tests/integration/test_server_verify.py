"""``nexus-fast verify``: real listeners and backends pass; missing ones fail with the reason and exit 1."""

from __future__ import annotations

import os
import subprocess
import sys

import tomli_w

from nexus_fast._testing.ports import free_port, system_postgres_address, system_redis_address
from nexus_fast._testing.proxy import NexusProcess

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def verify(tmp_path, config: dict) -> subprocess.CompletedProcess[str]:
    path = tmp_path / "verify.toml"
    path.write_text(tomli_w.dumps(config))
    return subprocess.run([sys.executable, "-m", "nexus_fast", "verify", "-c", str(path), "--timeout", "2"],
                          capture_output=True, text=True, timeout=60, cwd=ROOT)


def test_verify_passes_when_every_listener_and_backend_answers(tmp_path) -> None:
    pg_host, pg_port = system_postgres_address()
    redis_host, redis_port = system_redis_address()
    with NexusProcess({}) as nexus:
        # The listener checks speak each protocol, so the machine's own servers stand in for the proxy's listeners.
        result = verify(tmp_path, {
            "admin": {"listen": nexus.admin_listen},
            "postgres": {"listen": f"{pg_host}:{pg_port}", "auth_type": "trust",
                         "databases": {"test": {"servers": [{"host": pg_host, "port": pg_port}]}}},
            "redis": {"pools": {"cache": {"listen": f"{redis_host}:{redis_port}",
                                         "servers": [f"{redis_host}:{redis_port}:1 main"]}}},
        })
    assert result.returncode == 0, result.stdout + result.stderr
    out = result.stdout
    assert f"ok   listener admin {nexus.admin_listen}" in out
    assert "ok   listener postgres" in out and "answers the PostgreSQL protocol" in out
    assert "ok   listener redis cache" in out and "PONG" in out
    assert f"ok   backend postgres test/primary {pg_host}:{pg_port} (db test, user postgres)" in out
    assert f"ok   backend redis cache/main {redis_host}:{redis_port}" in out
    assert "ok   query postgres" in out and "(SELECT 1 as postgres@test)" in out
    assert "all 6 checks passed" in out


def test_verify_lists_every_failure_and_exits_non_zero(tmp_path) -> None:
    dead = [free_port() for _ in range(4)]
    result = verify(tmp_path, {
        "admin": {"listen": f"127.0.0.1:{dead[0]}"},
        "postgres": {"listen": f"127.0.0.1:{dead[1]}", "auth_type": "trust",
                     "databases": {"app": {"servers": [{"host": "127.0.0.1", "port": dead[2]}]},
                                   "nodb": {"dbname": "no_such_database_here"}}},
        "redis": {"pools": {"cache": {"listen": "127.0.0.1:6379", "servers": [f"127.0.0.1:{dead[3]}:1"]}}},
    })
    assert result.returncode == 1, result.stdout
    out = result.stdout
    assert "6 of 7 checks failed" in out
    assert f"FAIL query postgres 127.0.0.1:{dead[1]} (SELECT 1 as postgres@app): connection refused" in out
    assert f"FAIL listener admin 127.0.0.1:{dead[0]}: connection refused" in out
    assert f"FAIL listener postgres 127.0.0.1:{dead[1]}: connection refused" in out
    assert f"FAIL backend postgres app/primary 127.0.0.1:{dead[2]}" in out
    assert "FAIL backend postgres nodb/primary 127.0.0.1:5432" in out and "no_such_database_here" in out
    assert f"FAIL backend redis cache/127.0.0.1:{dead[3]} 127.0.0.1:{dead[3]}: connection refused" in out


def test_verify_logs_in_through_a_running_proxy(tmp_path) -> None:
    pg_host, pg_port = system_postgres_address()
    config = {"postgres": {"listen": f"127.0.0.1:{free_port()}", "auth_type": "scram-sha-256",
                           "users": {"postgres": {"password": "verify-pw"}},
                           "databases": {"test": {"servers": [{"host": pg_host, "port": pg_port}]}}}}
    with NexusProcess(config) as nexus:
        result = verify(tmp_path, {**config, "admin": {"listen": nexus.admin_listen}})
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"ok   query postgres {config['postgres']['listen']} (SELECT 1 as postgres@test)" in result.stdout


def test_backend_probes_log_in_as_the_config_says() -> None:
    from nexus_fast.config.load import validate
    from nexus_fast.server.backends import postgres_backends, redis_backends

    config = validate({
        "postgres": {"users": {"hashed": {"password": "md5" + "0" * 32}, "alice": {"password": "pw"}},
                     "databases": {"app": {"dbname": "appdb", "servers": [
                         {"host": "10.0.0.1", "port": 5432, "role": "primary"},
                         {"host": "10.0.0.2", "port": 5432, "role": "replica"},
                         {"host": "10.0.0.3", "port": 5432, "role": "replica"}]},
                         "forced": {"user": "svc", "password": "svcpw"}}},
        "redis": {"pools": {"c": {"servers": ["10.0.1.1:6379:1 a", "10.0.1.2:6380:2"],
                                  "backend_username": "proxy", "backend_password": "rpw"}}},
    }, "test")
    pg = {b.name: b for b in postgres_backends(config)}
    assert set(pg) == {"app/primary", "app/replica1", "app/replica2", "forced/primary"}
    assert (pg["app/primary"].user, pg["app/primary"].password, pg["app/primary"].dbname) == ("alice", "pw", "appdb")
    assert (pg["forced/primary"].user, pg["forced/primary"].password) == ("svc", "svcpw")
    assert pg["forced/primary"].address == "127.0.0.1:5432"  # no servers: the documented default primary
    rd = redis_backends(config)
    assert [(b.name, b.address, b.username, b.password) for b in rd] == [
        ("c/a", "10.0.1.1:6379", "proxy", "rpw"), ("c/10.0.1.2:6380", "10.0.1.2:6380", "proxy", "rpw")]
