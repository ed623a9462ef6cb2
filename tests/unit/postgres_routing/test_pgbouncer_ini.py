"""pgbouncer.ini + userlist.txt imported with PgBouncer's meanings and units; nothing silently ignored."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from nexus_fast._testing.peers import pgbouncer_ini, pgbouncer_userlist
from nexus_fast.config.errors import ConfigError
from nexus_fast.config.load import load_config, validate
from nexus_fast.config.pgbouncer_ini import import_pgbouncer_ini, parse_connstr

ROOT = Path(__file__).resolve().parents[3]


def _load(tmp_path: Path, text: str, userlist: str | None = '"app" "pw"\n') -> tuple[object, list[str]]:
    if userlist is not None:
        (tmp_path / "userlist.txt").write_text(userlist)
    data, warnings = import_pgbouncer_ini(text, str(tmp_path / "pgbouncer.ini"), str(tmp_path))
    config = validate(data, "pgbouncer.ini")
    assert config.postgres is not None
    return config.postgres, warnings


def test_the_example_file_loads_with_pgbouncer_meanings() -> None:
    loaded = load_config(str(ROOT / "examples" / "pgbouncer.ini"))
    assert loaded.file_format == "pgbouncer"
    pg = loaded.config.postgres
    assert pg is not None
    assert pg.listen == "0.0.0.0:6432"
    assert pg.auth_type == "scram-sha-256"
    assert pg.auth_file == str(ROOT / "examples" / "userlist.txt")  # relative to the ini, not the cwd
    assert pg.admin_users == ["postgres", "ops"] and pg.stats_users == ["prometheus", "datadog"]
    assert (pg.server_lifetime, pg.server_idle_timeout, pg.connect_timeout) == (1800.0, 300.0, 5.0)
    assert (pg.reserve_pool_timeout, pg.tcp_keepidle, pg.stats_period) == (3.0, 60.0, 30.0)
    assert (pg.max_client_conn, pg.default_pool_size, pg.max_prepared_statements) == (5000, 25, 100)
    assert pg.ignore_startup_parameters == ["extra_float_digits", "search_path"]
    payments = pg.databases["payments"]
    assert [(s.host, s.role) for s in payments.servers] == [
        ("10.0.1.10", "primary"), ("10.0.1.11", "replica"), ("10.0.1.12", "replica")]
    assert (payments.pool_size, payments.reserve_pool_size) == (40, 5)
    ledger = pg.databases["ledger"]
    assert ledger.user == "ledger_app" and ledger.password is not None
    assert ledger.password.get_secret_value() == "s3cr3t 'quoted'"
    assert ledger.pool_mode == "session"
    assert pg.databases["reporting"].connect_query == "SET statement_timeout = 60000"
    assert pg.databases["*"].servers[0].host == "/var/run/postgresql"
    assert pg.users["batch_loader"].max_user_connections == 10
    warned = {w.split(" ")[0] for w in loaded.warnings}
    assert {"pgbouncer.logfile", "pgbouncer.pidfile", "pgbouncer.server_login_retry",
            "databases.payments.host"} <= warned


def test_the_file_pgbouncer_itself_runs_with_imports(tmp_path: Path) -> None:
    # The exact text the peer harness starts a real PgBouncer with (bench/ runs it beside us).
    text = pgbouncer_ini(listen=("127.0.0.1", 16432), backend=("127.0.0.1", 5432),
                         auth_file=str(tmp_path / "userlist.txt"), logfile=str(tmp_path / "pgb.log"))
    pg, warnings = _load(tmp_path, text, pgbouncer_userlist({"postgres": ""}))
    assert pg.listen == "127.0.0.1:16432"
    assert pg.pool_mode == "transaction" and pg.auth_type == "trust"
    assert pg.databases["*"].servers[0].address == "127.0.0.1:5432"
    assert pg.max_client_conn == 20000
    assert any(w.startswith("pgbouncer.logfile") for w in warnings)


def test_pgbouncer_defaults_apply_when_keys_are_absent(tmp_path: Path) -> None:
    pg, _ = _load(tmp_path, "[databases]\napp = host=db1\n[pgbouncer]\nlisten_addr = 127.0.0.1\n")
    assert pg.pool_mode == "session"  # PgBouncer's default, not ours
    assert pg.auth_type == "md5"
    assert pg.max_client_conn == 100
    assert pg.connect_timeout == 15.0
    assert pg.admin_users == []
    assert pg.listen == "127.0.0.1:6432"


@pytest.mark.parametrize(
    ("key", "value", "field", "expected"),
    [
        ("server_lifetime", "3600", "server_lifetime", 3600.0),
        ("query_timeout", "0.5", "query_timeout", 0.5),
        ("query_wait_timeout", "0", "query_wait_timeout", 0.0),
        ("server_check_delay", "250ms", "server_check_delay", 0.25),  # explicit units pass through
        ("tcp_keepalive", "0", "tcp_keepalive", False),
        ("server_reset_query_always", "yes", "server_reset_query_always", True),
        ("application_name_add_host", "1", "application_name_add_host", True),
        ("stats_users", "a b,c", "stats_users", ["a", "b", "c"]),
        ("server_connect_timeout", "2.5", "connect_timeout", 2.5),
        ("pool_mode", "Statement", "pool_mode", "statement"),
    ],
)
def test_values_keep_pgbouncer_units(tmp_path: Path, key: str, value: str, field: str, expected: object) -> None:
    pg, _ = _load(tmp_path, f"[pgbouncer]\nlisten_addr = 127.0.0.1\n{key} = {value}\n")
    assert getattr(pg, field) == expected


def test_unknown_and_unused_keys_are_warnings_never_silent(tmp_path: Path) -> None:
    text = (
        "[databases]\napp = host=db1 client_encoding=UTF8 frobnicate=1\n"
        "[users]\nbob = pool_mode=transaction colour=blue\n"
        "[pgbouncer]\nlisten_addr = 127.0.0.1\nsyslog = 1\nmade_up_key = 3\n"
        "[extras]\nx = 1\n"
    )
    pg, warnings = _load(tmp_path, text)
    assert pg.users["bob"].pool_mode == "transaction"
    text_of = "\n".join(warnings)
    for fragment in ("databases.app.client_encoding is not used", "databases.app.frobnicate is not a connection",
                     "users.bob.colour", "pgbouncer.syslog is not used", "pgbouncer.made_up_key is not a PgBouncer",
                     "[extras] is not a PgBouncer section"):
        assert fragment in text_of


def test_errors_name_every_bad_key(tmp_path: Path) -> None:
    text = (
        "[databases]\nbad = host=db1 port=notaport\nbroken = host='unterminated\nsized = pool_size=-3\n"
        "[pgbouncer]\nlisten_port = 99999\nauth_type = hba\ndefault_pool_size = many\npool_mode = sometimes\n"
        "server_lifetime = forever\nauth_file = missing.txt\n"
    )
    with pytest.raises(ConfigError) as caught:
        import_pgbouncer_ini(text, "pgbouncer.ini", str(tmp_path))
    paths = {p.key_path for p in caught.value.problems}
    assert paths == {"databases.bad.port", "databases.broken", "databases.sized.pool_size", "pgbouncer.listen_port",
                     "pgbouncer.auth_type", "pgbouncer.default_pool_size", "pgbouncer.pool_mode",
                     "pgbouncer.server_lifetime", "pgbouncer.auth_file"}
    assert "missing.txt" in str(caught.value)


def test_not_a_pgbouncer_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"is this a pgbouncer\.ini"):
        import_pgbouncer_ini("[server]\nworkers = 2\n", "x.ini", str(tmp_path))


def test_include_and_auth_file_are_relative_to_the_ini(tmp_path: Path) -> None:
    conf = tmp_path / "conf.d"
    conf.mkdir()
    (conf / "databases.ini").write_text("[databases]\nincluded = host=db9 port=6543\n")
    (tmp_path / "users.txt").write_text('"app" "pw"\nnot a valid line\n')
    text = "[pgbouncer]\nlisten_addr = 127.0.0.1\nauth_file = users.txt\n%include conf.d/databases.ini\n"
    pg, warnings = _load(tmp_path, text, userlist=None)
    assert pg.databases["included"].servers[0].address == "db9:6543"
    assert pg.auth_file == str(tmp_path / "users.txt")
    assert any("users.txt line 2" in w for w in warnings)


def test_listen_and_socket_rules(tmp_path: Path) -> None:
    pg, warnings = _load(tmp_path, "[databases]\nlocal = dbname=app\n[pgbouncer]\nlisten_port = 7000\n"
                                   "unix_socket_dir = /var/run/postgresql\n")
    assert pg.listen == "127.0.0.1:7000"
    assert any("listen_addr is not set" in w for w in warnings)
    assert pg.databases["local"].servers[0].host == "/var/run/postgresql"  # no host: PgBouncer's socket dir
    pg, _ = _load(tmp_path, "[databases]\nlocal = dbname=app\n[pgbouncer]\nlisten_addr = *\n")
    assert pg.listen == "0.0.0.0:6432"
    assert pg.databases["local"].servers[0].host == "/tmp"  # PgBouncer's default unix_socket_dir


@pytest.mark.parametrize(
    ("text", "parsed"),
    [
        ("host=db1 port=5432 dbname=app", {"host": "db1", "port": "5432", "dbname": "app"}),
        ("  user = bob   password='a b c' ", {"user": "bob", "password": "a b c"}),
        (r"password='it\'s' connect_query='SELECT \\1'", {"password": "it's", "connect_query": "SELECT \\1"}),
        ("password=''", {"password": ""}),
        ("", {}),
    ],
)
def test_parse_connstr(text: str, parsed: dict[str, str]) -> None:
    assert parse_connstr(text) == parsed


@pytest.mark.parametrize("text", ["host", "=x", "host='open", "1abc=2"])
def test_parse_connstr_errors(text: str) -> None:
    with pytest.raises(ValueError):
        parse_connstr(text)


def test_quoted_database_names(tmp_path: Path) -> None:
    pg, _ = _load(tmp_path, '[databases]\n"my db" = host=db1\n[pgbouncer]\nlisten_addr = 127.0.0.1\n')
    assert "my db" in pg.databases


def test_import_cli_prints_toml(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from nexus_fast.cli import main

    assert main(["config", "import", os.fspath(ROOT / "examples" / "pgbouncer.ini")]) == 0
    out = capsys.readouterr().out
    assert '[postgres]' in out and 'server_lifetime = "1800s"' in out


def test_debians_packaged_pgbouncer_ini_loads() -> None:
    # The file the pgbouncer package installs (every key commented out except a handful): a user's starting point.
    loaded = load_config("/etc/pgbouncer/pgbouncer.ini")
    pg = loaded.config.postgres
    assert pg is not None
    assert pg.listen == "127.0.0.1:6432"  # listen_addr = localhost
    assert pg.unix_socket_dir == "/var/run/postgresql"
    assert (pg.auth_type, pg.auth_file) == ("md5", "/etc/pgbouncer/userlist.txt")
    assert pg.pool_mode == "session" and pg.databases == {}
    assert {w.split(" ")[0] for w in loaded.warnings} == {"pgbouncer.logfile", "pgbouncer.pidfile"}
