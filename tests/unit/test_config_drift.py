"""Drift: which keys differ between two effective configs; secrets compared but never shown."""

from __future__ import annotations

import io

from nexus_fast.config.drift import MISSING, diff, flatten, run_diff
from nexus_fast.config.load import validate


def test_flatten_makes_key_paths() -> None:
    assert flatten({"a": {"b": 1, "c": {"d": [1, 2]}}, "e": {}}) == {"a.b": 1, "a.c.d": [1, 2], "e": {}}


def test_diff_lists_changed_added_and_removed_keys_with_units_normalised() -> None:
    running = validate({"admin": {"health_check_interval": "1000ms"},
                        "postgres": {"default_pool_size": 10, "auth_password": "old"}}, "a")
    same = validate({"admin": {"health_check_interval": "1s"},
                     "postgres": {"default_pool_size": 10, "auth_password": "old"}}, "b")
    assert diff(running, same) == []
    other = validate({"admin": {"health_check_interval": "2s"},
                      "postgres": {"default_pool_size": 12, "auth_password": "new"},
                      "redis": {"pools": {"c": {"servers": ["127.0.0.1:6379:1"]}}}}, "c")
    drifts = {d.key_path: d for d in diff(running, other)}
    assert drifts["admin.health_check_interval"].running == "1s"
    assert drifts["admin.health_check_interval"].other == "2s"
    assert drifts["postgres.default_pool_size"].other == 12
    secret = drifts["postgres.auth_password"]
    assert secret.running == secret.other == "**********"  # it differs, and neither value is shown
    assert "new" not in str(secret) and "old" not in str(secret)
    assert drifts["redis.pools.c.servers"].running == MISSING


def test_run_diff_between_files(tmp_path) -> None:
    a = tmp_path / "a.toml"
    b = tmp_path / "b.toml"
    a.write_text('[server]\nshutdown_timeout = "5s"\n')
    b.write_text('[server]\nshutdown_timeout = "5000ms"\n')
    out = io.StringIO()
    assert run_diff(str(a), str(b), out) == 0 and "no drift" in out.getvalue()
    b.write_text('[server]\nshutdown_timeout = "6s"\n')
    out = io.StringIO()
    assert run_diff(str(a), str(b), out) == 1
    assert "server.shutdown_timeout: running '6s', file '5s'" in out.getvalue()
    b.write_text('[server]\nshutdown_timeout = 6\n')
    assert run_diff(str(a), str(b), io.StringIO()) == 2
