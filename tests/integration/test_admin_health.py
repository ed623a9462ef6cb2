"""/health/postgres and /health/redis follow real backends: a throwaway PostgreSQL stopped and restarted, a Redis
behind a fault proxy cut and restored. Also the dedicated health listeners (the roadmap's 1100/1200)."""

from __future__ import annotations

import time
import urllib.error
import urllib.request

from nexus_fast._testing.faultproxy import FaultProxy
from nexus_fast._testing.ports import system_redis_address
from nexus_fast._testing.postgres import postgres_node
from nexus_fast._testing.proxy import NexusProcess, free_listen


def wait_status(nexus: NexusProcess, path: str, status: int, timeout: float) -> tuple[float, object]:
    started = time.monotonic()
    body: object = None
    while time.monotonic() - started < timeout:
        got, body = nexus.get(path)
        if got == status:
            return time.monotonic() - started, body
        time.sleep(0.1)
    raise AssertionError(f"{path} did not answer {status} within {timeout}s (last: {body})\n{nexus.logs[-3000:]}")


def http_status(listen: str, path: str = "/") -> int:
    try:
        with urllib.request.urlopen(f"http://{listen}{path}", timeout=5) as response:
            return response.status
    except urllib.error.HTTPError as exc:
        exc.close()
        return exc.code


def test_health_postgres_turns_503_when_the_server_stops_and_200_when_it_returns() -> None:
    with postgres_node() as node:
        pg_health = free_listen()
        config = {
            "admin": {"health_check_interval": "500ms", "health_check_timeout": "1s",
                      "postgres_health_listen": pg_health},
            "postgres": {"listen": free_listen(), "auth_type": "trust",
                         "databases": {"postgres": {"servers": [{"host": node.host, "port": node.port}]}}},
        }
        with NexusProcess(config) as nexus:
            wait_status(nexus, "/health/postgres", 200, 10)
            assert http_status(pg_health) == 200
            node.stop("immediate")
            took, body = wait_status(nexus, "/health/postgres", 503, 10)
            assert took < 5, f"503 only after {took:.1f}s"
            assert isinstance(body, dict)
            down = [b for b in body["backends"] if b["address"] == f"{node.host}:{node.port}"]
            assert down and not down[0]["healthy"] and down[0]["reason"]
            assert nexus.get("/health")[0] == 503
            assert http_status(pg_health) == 503
            assert http_status(pg_health, "/anything") == 503
            assert f'nexus_backend_up{{address="{node.host}:{node.port}"' in nexus.get("/metrics")[1]
            node.start()
            wait_status(nexus, "/health/postgres", 200, 15)
            assert nexus.get("/health")[0] == 200
            assert http_status(pg_health) == 200


def test_health_redis_follows_a_cut_and_restored_backend() -> None:
    redis_health = free_listen()
    with FaultProxy(*system_redis_address()) as fp:
        config = {
            "admin": {"health_check_interval": "500ms", "health_check_timeout": "500ms",
                      "redis_health_listen": redis_health},
            "redis": {"pools": {"cache": {"listen": free_listen(), "servers": [f"127.0.0.1:{fp.port}:1 node0"]}}},
        }
        with NexusProcess(config) as nexus:
            wait_status(nexus, "/health/redis", 200, 10)
            assert http_status(redis_health) == 200
            fp.blackhole()  # connects succeed, PING never answered: only a real probe notices
            took, body = wait_status(nexus, "/health/redis", 503, 10)
            assert took < 5
            assert isinstance(body, dict)
            assert any(not b["healthy"] and b["address"] == f"127.0.0.1:{fp.port}" for b in body.get("backends", [])) \
                or "timed out" in body.get("reason", "")
            assert http_status(redis_health) == 503
            fp.pass_through()
            wait_status(nexus, "/health/redis", 200, 10)
            assert http_status(redis_health) == 200


def test_health_redis_names_the_node_that_died_and_recovers() -> None:
    from nexus_fast._testing.redis import RedisNodes

    with RedisNodes(2) as nodes:
        config = {"admin": {"health_check_interval": "500ms", "health_check_timeout": "500ms"},
                  "redis": {"pools": {"cache": {"listen": free_listen(), "servers": nodes.servers()}}}}
        with NexusProcess(config) as nexus:
            wait_status(nexus, "/health/redis", 200, 10)
            nodes[1].kill()
            took, body = wait_status(nexus, "/health/redis", 503, 10)
            assert took < 5
            assert isinstance(body, dict)
            by_address = {b["address"]: b for b in body["backends"]}
            assert by_address[nodes[0].address]["healthy"] is True
            assert by_address[nodes[1].address]["healthy"] is False and by_address[nodes[1].address]["reason"]
            nodes[1].start()
            wait_status(nexus, "/health/redis", 200, 10)
