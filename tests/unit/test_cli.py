"""The nexus-fast command line, run as users run it (subprocesses) where the exit code or environment matters."""

from __future__ import annotations

import os
import subprocess
import sys
import tomllib

import pytest

from nexus_fast import _extensions
from nexus_fast.cli import main

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "nexus_fast", *args], capture_output=True, text=True, timeout=60,
                          cwd=ROOT, env={**os.environ, **(env or {})})


def test_version_reports_compiled_modules() -> None:
    # Whatever this test run forces, the installed build must have every native module compiled.
    result = run("version", env={"NEXUS_FAST_NO_EXTENSIONS": ""})
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].startswith("nexus-fast ")
    for name in _extensions.TWINS:
        assert any(line.split()[:2] == [name, "compiled"] for line in lines[1:]), result.stdout


def test_version_reports_pure_twins_when_extensions_are_disabled() -> None:
    result = run("version", env={"NEXUS_FAST_NO_EXTENSIONS": "1"})
    assert result.returncode == 0, result.stderr
    for name in _extensions.TWINS:
        line = next(line for line in result.stdout.splitlines() if line.split()[:1] == [name])
        assert "pure-python" in line and "NEXUS_FAST_NO_EXTENSIONS is set" in line


def test_config_check_accepts_a_good_file_and_prints_the_effective_toml(tmp_path) -> None:
    path = tmp_path / "nexus.toml"
    path.write_text('[server]\nshutdown_timeout = "5s"\n[postgres]\nauth_password = "hunter2"\n')
    result = run("config", "check", str(path))
    assert result.returncode == 0, result.stderr
    effective = tomllib.loads(result.stdout)
    assert effective["server"]["shutdown_timeout"] == "5s"
    assert effective["admin"]["listen"] == "127.0.0.1:8080"  # defaults are shown
    assert "hunter2" not in result.stdout  # secrets redacted unless --show-secrets
    shown = run("config", "check", "--show-secrets", str(path))
    assert tomllib.loads(shown.stdout)["postgres"]["auth_password"] == "hunter2"


def test_config_check_rejects_a_bad_key_with_file_and_key_path(tmp_path) -> None:
    path = tmp_path / "nexus.toml"
    path.write_text('[admin]\nlisten = "127.0.0.1:8080"\nhealth_interval = "1s"\n')
    result = run("config", "check", str(path))
    assert result.returncode == 2
    assert f"{path}: admin.health_interval: unknown key" in result.stderr
    assert result.stdout == ""


def test_config_check_rejects_a_bad_value_with_file_key_path_and_reason(tmp_path) -> None:
    path = tmp_path / "nexus.toml"
    path.write_text('[server]\nshutdown_timeout = 30\n')
    result = run("config", "check", str(path))
    assert result.returncode == 2
    assert f"{path}: server.shutdown_timeout: 30 has no unit" in result.stderr


def test_config_import_prints_a_toml_that_serve_accepts(tmp_path, capsys) -> None:
    path = tmp_path / "nexus.toml"
    path.write_text('[admin]\nhealth_check_interval = "750ms"\n')
    assert main(["config", "import", str(path)]) == 0
    out = capsys.readouterr().out
    again = tmp_path / "again.toml"
    again.write_text(out)
    assert main(["config", "check", str(again)]) == 0
    assert tomllib.loads(out)["admin"]["health_check_interval"] == "750ms"


def test_config_docs_prints_the_reference(capsys) -> None:
    assert main(["config", "docs"]) == 0
    assert "## `[server]`" in capsys.readouterr().out


def test_serve_with_a_bad_file_exits_non_zero_before_starting(tmp_path) -> None:
    path = tmp_path / "nexus.toml"
    path.write_text('[server]\nworkers = 0\n')
    result = run("serve", "-c", str(path))
    assert result.returncode == 2
    assert "server.workers: workers must be between 1 and 256" in result.stderr


def test_an_unknown_command_is_a_usage_error() -> None:
    with pytest.raises(SystemExit) as info:
        main(["frobnicate"])
    assert info.value.code == 2


def test_config_import_translates_a_nutcracker_yml(tmp_path) -> None:
    source = tmp_path / "nutcracker.yml"
    source.write_text("alpha:\n  listen: 127.0.0.1:22121\n  redis: true\n  hash: fnv1a_64\n  distribution: ketama\n"
                      "  timeout: 400\n  servers:\n   - 127.0.0.1:6379:1 main\n")
    result = run("config", "import", str(source))
    assert result.returncode == 0, result.stderr
    imported = tomllib.loads(result.stdout)
    pool = imported["redis"]["pools"]["alpha"]
    assert pool["listen"] == "127.0.0.1:22121" and pool["servers"] == ["127.0.0.1:6379:1 main"]
    assert pool["timeout"] == "400ms"  # twemproxy's milliseconds made explicit
    target = tmp_path / "nexus.toml"
    target.write_text(result.stdout)
    assert run("config", "check", str(target)).returncode == 0


def test_config_import_translates_a_pgbouncer_ini(tmp_path) -> None:
    source = tmp_path / "pgbouncer.ini"
    (tmp_path / "userlist.txt").write_text('"app" "s3cret"\n')
    source.write_text("[databases]\nappdb = host=127.0.0.1 port=5432 dbname=app pool_size=7\n\n[pgbouncer]\n"
                      "listen_addr = 127.0.0.1\nlisten_port = 6433\nauth_type = md5\nauth_file = userlist.txt\n"
                      "server_lifetime = 1800\nquery_wait_timeout = 0.5\n")
    result = run("config", "import", str(source))
    assert result.returncode == 0, result.stderr
    pg = tomllib.loads(result.stdout)["postgres"]
    assert pg["listen"] == "127.0.0.1:6433" and pg["auth_type"] == "md5"
    assert pg["server_lifetime"] == "1800s" and pg["query_wait_timeout"] == "500ms"  # PgBouncer's seconds
    assert pg["databases"]["appdb"]["pool_size"] == 7
    target = tmp_path / "nexus.toml"
    target.write_text(result.stdout)
    assert run("config", "check", str(target)).returncode == 0


@pytest.mark.parametrize("workers", ["0", "-1", "many", "257"])
def test_serve_refuses_a_bad_worker_count(workers: str, tmp_path, capsys) -> None:
    path = tmp_path / "nexus.toml"
    path.write_text("")
    with pytest.raises(SystemExit) as info:
        main(["serve", "-c", str(path), "--workers", workers])
    assert info.value.code == 2
    assert "worker count between 1 and 256" in capsys.readouterr().err
