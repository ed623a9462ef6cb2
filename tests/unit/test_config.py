"""Config loading and validation: every problem names the file, the key path and the reason."""

from __future__ import annotations

import json
import os
import textwrap

import pytest
import tomli_w
from hypothesis import given, settings
from hypothesis import strategies as st

from nexus_fast.config.errors import ConfigError
from nexus_fast.config.load import detect_format, digest_of, load_config, to_dict, validate
from nexus_fast.config.render import to_toml


def write(tmp_path, text: str, name: str = "nexus.toml") -> str:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return str(path)


def problems(path: str) -> dict[str, str]:
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert info.value.source == path
    return {p.key_path: p.reason for p in info.value.problems}


def test_an_empty_file_is_the_documented_defaults(tmp_path) -> None:
    loaded = load_config(write(tmp_path, ""))
    assert loaded.config.server.workers == 1
    assert loaded.config.server.shutdown_timeout == 30.0
    assert loaded.config.admin.listen == "127.0.0.1:8080"
    assert loaded.config.postgres is None and loaded.config.redis is None
    assert loaded.file_format == "toml" and len(loaded.digest) == 64


def test_a_bad_key_is_rejected_with_its_key_path(tmp_path) -> None:
    found = problems(write(tmp_path, """
        [server]
        workers = 2
        shutdown_timout = "5s"
    """))
    assert found == {"server.shutdown_timout": "unknown key"}


def test_a_bad_value_is_rejected_with_its_key_path_and_reason(tmp_path) -> None:
    found = problems(write(tmp_path, """
        [admin]
        health_check_interval = 5
    """))
    assert list(found) == ["admin.health_check_interval"]
    assert "has no unit" in found["admin.health_check_interval"]


def test_every_problem_is_reported_in_one_pass(tmp_path) -> None:
    found = problems(write(tmp_path, """
        [server]
        workers = 0
        log_level = "loud"
        [admin]
        listen = "nowhere"
        [nope]
        x = 1
    """))
    assert set(found) == {"server.workers", "server.log_level", "admin.listen", "nope"}
    assert "between 1 and 256" in found["server.workers"]
    assert "not host:port" in found["admin.listen"]
    assert found["nope"] == "unknown key"


def test_nested_plane_section_errors_name_the_full_path(tmp_path) -> None:
    found = problems(write(tmp_path, """
        [postgres]
        listen = "127.0.0.1:6432"
        connect_timeout = "soon"
    """))
    assert list(found) == ["postgres.connect_timeout"]
    assert "is not a duration" in found["postgres.connect_timeout"]


def test_the_error_text_names_file_key_and_reason(tmp_path) -> None:
    path = write(tmp_path, "[server]\nworkers = \"many\"\n")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    text = str(info.value)
    assert path in text and "server.workers" in text


def test_toml_syntax_and_unreadable_files_are_config_errors(tmp_path) -> None:
    found = problems(write(tmp_path, "[server\nworkers = 1\n"))
    assert "not valid TOML" in found[""]
    found = problems(str(tmp_path / "missing.toml"))
    assert "cannot read file" in found[""]
    found = problems(str(tmp_path))
    assert "cannot read file" in found[""]
    binary = tmp_path / "binary.toml"
    binary.write_bytes(b"[server]\nworkers = \xff\xfe\n")
    assert "not UTF-8" in problems(str(binary))[""]


def test_workers_auto_resolves_to_the_cpu_count(tmp_path) -> None:
    loaded = load_config(write(tmp_path, '[server]\nworkers = "auto"\n'))
    assert loaded.config.server.worker_count() == len(os.sched_getaffinity(0))


def test_secrets_are_redacted_on_request_and_kept_otherwise() -> None:
    config = validate({"postgres": {"auth_user": "pgb", "auth_password": "s3cret",
                                    "databases": {"app": {"user": "u", "password": "dbpw"}}}}, "mem")
    redacted = json.dumps(to_dict(config, redact=True))
    assert "s3cret" not in redacted and "dbpw" not in redacted and "**********" in redacted
    plain = to_dict(config)
    assert plain["postgres"]["auth_password"] == "s3cret"
    assert plain["postgres"]["databases"]["app"]["password"] == "dbpw"


def test_effective_config_round_trips_through_toml(tmp_path) -> None:
    original = load_config(write(tmp_path, """
        [server]
        shutdown_timeout = "1500ms"
        [admin]
        health_check_interval = "250ms"
        [postgres]
        listen = "127.0.0.1:7432"
        auth_password = "pw"
        [postgres.databases.app]
        servers = [{ host = "127.0.0.1", port = 5432 }]
    """))
    rendered = to_toml(original)
    again = load_config(write(tmp_path, rendered, "again.toml"))
    assert again.config == original.config
    assert again.digest == original.digest == digest_of(original.config)
    assert 'shutdown_timeout = "1500ms"' in rendered


def test_the_digest_changes_with_the_config() -> None:
    a = validate({"admin": {"health_check_interval": "1s"}}, "a")
    b = validate({"admin": {"health_check_interval": "2s"}}, "b")
    assert digest_of(a) != digest_of(b)
    assert digest_of(a) == digest_of(validate({"admin": {"health_check_interval": "1000ms"}}, "c"))


@pytest.mark.parametrize(("name", "text", "expected"), [
    ("x.toml", "", "toml"),
    ("pgbouncer.ini", "", "pgbouncer"),
    ("nutcracker.yml", "", "nutcracker"),
    ("nutcracker.yaml", "", "nutcracker"),
    ("conf", "; comment\n[databases]\nx = host=a\n", "pgbouncer"),
    ("conf", "alpha:\n  listen: 127.0.0.1:22121\n", "nutcracker"),
    ("conf", "[server]\nworkers = 1\n", "toml"),
])
def test_the_format_is_recognised(name: str, text: str, expected: str) -> None:
    assert detect_format(name, text) == expected


durations = st.integers(min_value=0, max_value=10**7).map(lambda ms: f"{ms}ms")
sections = st.fixed_dictionaries({
    "server": st.fixed_dictionaries({}, optional={
        "workers": st.one_of(st.integers(1, 256), st.just("auto")),
        "shutdown_timeout": durations,
        "worker_watchdog_timeout": durations,
        "log_format": st.sampled_from(["logfmt", "json"]),
        "log_level": st.sampled_from(["debug", "info", "warning", "error"]),
    }),
    "admin": st.fixed_dictionaries({}, optional={
        "listen": st.integers(1, 65535).map(lambda p: f"127.0.0.1:{p}"),
        "health_check_interval": durations,
        "health_check_timeout": durations,
        "http_reload": st.booleans(),
        "auth_token": st.text(min_size=1, max_size=20).filter(lambda t: "\x00" not in t),
    }),
})


@settings(max_examples=60, deadline=None)
@given(sections)
def test_any_valid_config_survives_the_toml_round_trip(tmp_path_factory, data: dict) -> None:
    directory = tmp_path_factory.mktemp("rt")
    first = directory / "a.toml"
    first.write_text(tomli_w.dumps(data))
    loaded = load_config(str(first))
    second = directory / "b.toml"
    second.write_text(to_toml(loaded))
    again = load_config(str(second))
    assert again.config == loaded.config and again.digest == loaded.digest
