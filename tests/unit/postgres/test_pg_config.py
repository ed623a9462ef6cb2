"""The [postgres] section: defaults, overrides (user > database > section) and refusals."""

from __future__ import annotations

import pytest

from nexus_fast.config.schema import NexusConfig


def _cfg(postgres: dict) -> NexusConfig:
    return NexusConfig.model_validate({"postgres": postgres})


def test_defaults_match_pgbouncer_names():
    pg = _cfg({}).postgres
    assert pg is not None
    assert (pg.pool_mode, pg.auth_type, pg.default_pool_size, pg.max_prepared_statements) == (
        "transaction", "scram-sha-256", 20, 200)
    assert pg.server_reset_query == "DISCARD ALL" and pg.server_check_delay == 30.0 and pg.query_timeout == 0.0


def test_pool_settings_precedence():
    pg = _cfg({
        "default_pool_size": 20, "pool_mode": "transaction", "max_db_connections": 50,
        "databases": {"app": {"pool_size": 10, "pool_mode": "session"}, "*": {}},
        "users": {"alice": {"pool_size": 3, "pool_mode": "statement"}},
    }).postgres
    assert pg is not None
    alice = pg.pool_settings("app", "alice")
    assert (alice.pool_mode, alice.pool_size, alice.max_db_connections) == ("statement", 3, 50)
    bob = pg.pool_settings("app", "bob")
    assert (bob.pool_mode, bob.pool_size) == ("session", 10)
    other = pg.pool_settings("anything", "bob")  # the '*' wildcard database
    assert (other.pool_mode, other.pool_size) == ("transaction", 20)
    assert pg.database("anything") is pg.databases["*"]
    assert pg.databases["app"].backend_dbname("app") == "app"


@pytest.mark.parametrize(
    "postgres",
    [
        {"pool_mode": "sometimes"},
        {"auth_type": "plain"},
        {"query_timeout": 30},  # durations need units
        {"client_tls_sslmode": "require"},  # without cert/key
        {"databases": {"a": {"servers": [{"role": "replica"}]}}},  # no primary
        {"retry_backoff_base": "5s", "retry_backoff_max": "1s"},
        {"listen": "nowhere"},
    ],
)
def test_refused(postgres):
    with pytest.raises(Exception):  # noqa: B017 - pydantic's ValidationError, each naming the key
        _cfg(postgres)
