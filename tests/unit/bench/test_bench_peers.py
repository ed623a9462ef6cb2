"""Each generated peer config is accepted by the real peer: started on a free port and used once."""

from __future__ import annotations

import shutil
import subprocess

import pytest

from bench.targets import TargetOptions, check_postgres, check_redis, nexus_config
from nexus_fast._testing import peers
from nexus_fast._testing.ports import port_open, system_postgres_address, system_redis_address
from nexus_fast.config.schema import NexusConfig

pytestmark = pytest.mark.skipif(
    not all(shutil.which(tool) for tool in ("pgbouncer", "nutcracker", "haproxy", "redis-server", "psql")),
    reason="needs pgbouncer, nutcracker, haproxy, redis-server and psql (Debian packages)",
)


def test_bench_pgbouncer_config_is_accepted_and_pools():
    with peers.start_pgbouncer(system_postgres_address(), pool_size=3) as bouncer:
        assert check_postgres(bouncer.address, "postgres") is None
        text = bouncer.config_path.read_text()
        assert "pool_mode = transaction" in text and "default_pool_size = 3" in text
        # PgBouncer's own view of the config it loaded (admin console, SHOW CONFIG).
        shown = subprocess.run(["psql", "-h", bouncer.host, "-p", str(bouncer.port), "-U", "postgres", "-d",
                                "pgbouncer", "-Atc", "SHOW CONFIG"], capture_output=True, text=True, timeout=10)
        assert "default_pool_size|3" in shown.stdout.replace(" ", "")
    assert not bouncer.alive() and not bouncer.workdir.exists()


def test_bench_nutcracker_config_is_accepted_and_relays():
    with peers.start_redis_server() as node, peers.start_nutcracker([node.address]) as proxy:
        assert peers.redis_ping(proxy.address) == "+PONG"
        assert port_open("127.0.0.1", proxy.extra_ports["stats"])
        done = subprocess.run(["redis-cli", "-p", str(proxy.port), "SET", "bench-key", "v"], capture_output=True,
                              text=True, timeout=10)
        assert done.stdout.strip() == "OK"
        direct = subprocess.run(["redis-cli", "-p", str(node.port), "GET", "bench-key"], capture_output=True,
                                text=True, timeout=10)
        assert direct.stdout.strip() == "v"  # the write went through twemproxy to the node


def test_bench_nutcracker_bad_config_says_why():
    with pytest.raises(peers.PeerStartError, match="nutcracker"):
        peers.start_nutcracker([system_redis_address()], hash="no-such-hash")


def test_bench_haproxy_config_is_accepted_and_relays_both_protocols():
    with peers.start_haproxy(system_redis_address()) as relay:
        assert check_redis(relay.address) is None
    with peers.start_haproxy(system_postgres_address()) as relay:
        assert check_postgres(relay.address, "postgres") is None
    assert "mode tcp" in peers.haproxy_cfg(listen=("127.0.0.1", 1), backend=("127.0.0.1", 2))


def test_bench_peer_that_exits_reports_its_log():
    # Two PgBouncers on one port: the second cannot bind and exits; its own log line is the reason.
    with peers.start_pgbouncer(system_postgres_address()) as first:
        with pytest.raises(peers.PeerStartError) as caught:
            peers.start_pgbouncer(system_postgres_address(), port=first.port, timeout=5)
        assert first.alive()
    assert "pgbouncer exited with status" in str(caught.value)
    assert "Address already in use" in str(caught.value)


def test_bench_userlist_quoting():
    assert peers.pgbouncer_userlist({'a"b': "", "c": "s"}) == '"a""b" ""\n"c" "s"\n'


def test_bench_nexus_config_is_valid_for_the_schema():
    options = TargetOptions(postgres=("127.0.0.1", 5432), redis=("127.0.0.1", 6379), database="db", pool_size=20)
    for workers in (1, 2):
        config = nexus_config(options, workers=workers, postgres_listen=("127.0.0.1", 7001),
                              redis_listen=("127.0.0.1", 7002), redis_server=("127.0.0.1", 6379),
                              ring_listen=("127.0.0.1", 7003), ring_servers=[("127.0.0.1", 7004), ("127.0.0.1", 7005)])
        parsed = NexusConfig.model_validate(config)
        assert parsed.server.workers == workers
        assert parsed.postgres is not None and parsed.postgres.default_pool_size * workers == 20
        assert parsed.redis is not None and set(parsed.redis.pools) == {"single", "ring"}
        assert len(parsed.redis.pools["ring"].server_specs()) == 2
