"""twemproxy's nutcracker.yml imported with twemproxy's meanings and units."""

from __future__ import annotations

import pytest

from nexus_fast.config.errors import ConfigError
from nexus_fast.config.load import validate
from nexus_fast.config.nutcracker_yml import import_nutcracker_yml

YML = """
alpha:
  listen: 127.0.0.1:22121
  hash: fnv1a_64
  hash_tag: "{}"
  distribution: ketama
  auto_eject_hosts: true
  redis: true
  redis_auth: s3cret
  redis_db: 2
  timeout: 400
  server_retry_timeout: 2000
  server_failure_limit: 3
  backlog: 1024
  servers:
   - 127.0.0.1:6379:1 server1
   - 127.0.0.1:6380:2
"""


def test_units_and_meanings():
    data, warnings = import_nutcracker_yml(YML, "n.yml", "/tmp")
    pool = validate(data, "n.yml").redis.pools["alpha"]
    assert pool.timeout == 0.4  # twemproxy's timeout is milliseconds
    assert pool.server_retry_timeout == 2.0
    assert pool.server_failure_limit == 3 and pool.auto_eject_hosts
    assert pool.password.get_secret_value() == "s3cret" and pool.backend_password.get_secret_value() == "s3cret"
    assert pool.database == 2 and pool.hash_tag == "{}"
    specs = pool.server_specs()
    assert (specs[0].name, specs[0].weight) == ("server1", 1)
    assert (specs[1].name, specs[1].weight, specs[1].port) == ("127.0.0.1:6380", 2, 6380)
    assert any("backlog" in w for w in warnings)


def test_memcached_pool_and_unknown_keys_are_errors():
    with pytest.raises(ConfigError) as info:
        import_nutcracker_yml("m:\n  listen: 127.0.0.1:1\n  bogus: 1\n  servers: ['127.0.0.1:11211:1']\n", "m.yml", "/")
    text = str(info.value)
    assert "redis.pools.m.redis" in text and "redis.pools.m.bogus" in text


def test_bad_values_named():
    with pytest.raises(ConfigError) as info:
        import_nutcracker_yml("p:\n  redis: true\n  timeout: fast\n  servers: ['127.0.0.1:1:1']\n", "p.yml", "/")
    assert "redis.pools.p.timeout" in str(info.value)
    data, _ = import_nutcracker_yml("p:\n  redis: true\n  hash: sha9\n  servers: ['127.0.0.1:1:1']\n", "p.yml", "/")
    with pytest.raises(ConfigError) as info:
        validate(data, "p.yml")
    assert "redis.pools.p.hash" in str(info.value)


def test_port_11211_name_rule():
    data, _ = import_nutcracker_yml("p:\n  redis: true\n  servers: ['10.0.0.1:11211:1']\n", "p.yml", "/")
    assert validate(data, "p.yml").redis.pools["p"].server_specs()[0].name == "10.0.0.1"
