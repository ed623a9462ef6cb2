"""End to end: `nexus-fast serve` as a subprocess with a nexus.toml over the harness's Redis Cluster and over three
ring nodes; redis-cli, redis-py and redis-benchmark through it."""

from __future__ import annotations

import subprocess

import redis

from nexus_fast._testing.proxy import NexusProcess, free_listen


def _cli(port: str, *args: str) -> str:
    return subprocess.run(["redis-cli", "-p", port, *args], capture_output=True, text=True, timeout=10,
                          check=True).stdout.strip()


def test_serve_over_redis_cluster(redis_cluster):
    listen = free_listen()
    config = {"redis": {"pools": {"cache": {"listen": listen, "mode": "cluster", "servers": redis_cluster.seeds()}}}}
    with NexusProcess(config, workers=1):
        port = listen.rsplit(":", 1)[1]
        assert _cli(port, "set", "e2e", "cluster") == "OK"
        assert _cli(port, "get", "e2e") == "cluster"
        client = redis.Redis(port=int(port))
        try:
            client.mset({f"e:{i}": i for i in range(100)})
            assert client.mget([f"e:{i}" for i in range(100)]) == [str(i).encode() for i in range(100)]
        finally:
            client.close()
        out = subprocess.run(["redis-benchmark", "-p", port, "-n", "2000", "-c", "10", "-t", "get,set", "-q"],
                             capture_output=True, text=True, timeout=60, check=True).stdout
        assert "SET:" in out and "GET:" in out


def test_serve_ring_with_two_workers(nodes):
    listen = free_listen()
    config = {"redis": {"pools": {"cache": {"listen": listen, "servers": nodes.servers()}}}}
    with NexusProcess(config, workers=2):
        port = listen.rsplit(":", 1)[1]
        client = redis.Redis(port=int(port))
        try:
            for i in range(200):
                client.set(f"w:{i}", i)
            assert client.get("w:7") == b"7"
        finally:
            client.close()
    assert sum(int(n.cli("dbsize")) for n in nodes.nodes) == 200
