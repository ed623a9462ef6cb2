"""The admin HTTP server in-process on the test's uvloop loop: health from probes, readiness, metrics, config."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

import aiohttp
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from nexus_fast._testing.ports import free_port
from nexus_fast.config.load import LoadedConfig, digest_of, validate
from nexus_fast.observe.metrics import Metrics
from nexus_fast.server.admin_http import AdminServer
from nexus_fast.server.health import HealthMonitor
from nexus_fast.server.plane import BackendHealth


@dataclass
class State:
    loaded: LoadedConfig
    health: HealthMonitor
    metrics: Metrics = field(default_factory=Metrics)
    worker_id: int = 0
    metrics_dir: str | None = None
    ready: bool = True
    last_reload: dict[str, Any] = field(default_factory=lambda: {"status": "none"})


def make_state(probes: dict, interval: str = "100ms", timeout: str = "200ms", extra: dict | None = None) -> State:
    port = free_port()
    config = validate({"admin": {"listen": f"127.0.0.1:{port}", "health_check_interval": interval,
                                 "health_check_timeout": timeout}, **(extra or {})}, "test")
    metrics = Metrics()
    monitor = HealthMonitor(probes, config.admin.health_check_interval, config.admin.health_check_timeout, metrics)
    return State(LoadedConfig(config, "test", "toml", digest_of(config)), monitor, metrics)


async def get(state: State, path: str) -> tuple[int, Any, str]:
    async with aiohttp.ClientSession() as session, session.get(f"http://{state.loaded.config.admin.listen}{path}") as r:
        body = await r.json() if r.content_type == "application/json" else await r.text()
        return r.status, body, r.headers["Content-Type"]


async def serve(state: State) -> AdminServer:
    server = AdminServer(state)
    await server.start()
    return server


async def test_health_aggregates_planes_with_per_backend_reasons() -> None:
    async def good(timeout: float) -> list[BackendHealth]:
        return [BackendHealth("postgres", "app/primary", "10.0.0.1:5432", True, "", 1.5)]

    async def bad(timeout: float) -> list[BackendHealth]:
        return [BackendHealth("redis", "cache/a", "10.0.0.2:6379", True),
                BackendHealth("redis", "cache/b", "10.0.0.3:6379", False, "connection refused")]

    state = make_state({"postgres": good, "redis": bad})
    await state.health.check_all()
    server = await serve(state)
    try:
        status, body, _ = await get(state, "/health")
        assert status == 503 and body["status"] == "down"
        assert body["planes"]["postgres"]["status"] == "up"
        status, body, _ = await get(state, "/health/redis")
        assert status == 503
        assert [b["reason"] for b in body["backends"]] == ["", "connection refused"]
        status, body, _ = await get(state, "/health/postgres")
        assert status == 200 and body["backends"][0]["latency_ms"] == 1.5
        status, body, _ = await get(state, "/health/nothing")
        assert status == 404
    finally:
        await server.stop()


async def test_a_probe_that_raises_or_hangs_marks_the_plane_down() -> None:
    async def raises(timeout: float) -> list[BackendHealth]:
        raise RuntimeError("boom")

    async def hangs(timeout: float) -> list[BackendHealth]:
        await asyncio.sleep(60)
        return []

    state = make_state({"postgres": raises, "redis": hangs}, timeout="100ms")
    await state.health.check_all()
    server = await serve(state)
    try:
        status, body, _ = await get(state, "/health/postgres")
        assert status == 503 and "boom" in body["reason"]
        status, body, _ = await get(state, "/health/redis")
        assert status == 503 and "timed out" in body["reason"]
    finally:
        await server.stop()


async def test_the_background_task_follows_a_backend_that_recovers() -> None:
    up = {"value": False}

    async def flaky(timeout: float) -> list[BackendHealth]:
        return [BackendHealth("redis", "cache/a", "h:1", up["value"], "" if up["value"] else "down")]

    state = make_state({"redis": flaky}, interval="50ms")
    state.health.start()
    server = await serve(state)
    try:
        await asyncio.sleep(0.2)
        assert (await get(state, "/health/redis"))[0] == 503
        up["value"] = True
        await asyncio.sleep(0.3)
        assert (await get(state, "/health/redis"))[0] == 200
        metrics = (await get(state, "/metrics"))[1]
        assert 'nexus_backend_up{address="h:1",backend="cache/a",plane="redis"} 1.0' in metrics
    finally:
        await state.health.stop()
        await server.stop()


async def test_ready_metrics_and_redacted_config() -> None:
    state = make_state({}, extra={"postgres": {"auth_password": "topsecret"}})
    state.metrics.counter("nexus_test_total", "A test counter.").inc(3)
    server = await serve(state)
    try:
        assert (await get(state, "/ready"))[0] == 200
        state.ready = False
        status, body, _ = await get(state, "/ready")
        assert status == 503 and body["status"] == "not ready"
        status, text, content_type = await get(state, "/metrics")
        assert status == 200 and "nexus_test_total 3.0" in text
        assert content_type == CONTENT_TYPE_LATEST
        status, body, _ = await get(state, "/config")
        assert status == 200 and body["digest"] == state.loaded.digest
        assert body["config"]["postgres"]["auth_password"] == "**********"
        assert "topsecret" not in str(body)
        assert body["last_reload"] == {"status": "none"}
    finally:
        await server.stop()


async def test_fallback_probes_check_a_section_whose_plane_is_absent() -> None:
    """Without a plane object, /health still probes the section's backends from the config (asyncpg, PING)."""
    from nexus_fast._testing.ports import system_postgres_address, system_redis_address
    from nexus_fast.server.worker import Worker, fallback_probes

    pg_host, pg_port = system_postgres_address()
    redis_host, redis_port = system_redis_address()
    dead = free_port()
    config = validate({
        "postgres": {"auth_type": "trust", "databases": {
            "test": {"servers": [{"host": pg_host, "port": pg_port}]},
            "gone": {"servers": [{"host": "127.0.0.1", "port": dead}]}}},
        "redis": {"pools": {"cache": {"servers": [f"{redis_host}:{redis_port}:1 main"]}}},
    }, "test")
    worker = Worker("unused.toml", LoadedConfig(config, "test", "toml", digest_of(config)))
    probes = fallback_probes(worker)  # no planes were built: every configured section falls back
    assert set(probes) == {"postgres", "redis"}
    pg = {b.name: b for b in await probes["postgres"](2.0)}
    assert pg["test/primary"].healthy and pg["test/primary"].latency_ms is not None
    assert not pg["gone/primary"].healthy and pg["gone/primary"].reason == "connection refused"
    (node,) = await probes["redis"](2.0)
    assert node.healthy and node.name == "cache/main"


def test_worker_expositions_merge_with_a_worker_label(tmp_path) -> None:
    from prometheus_client.parser import text_string_to_metric_families

    from nexus_fast.server import worker_metrics

    registries = []
    for requests in (3, 4):
        metrics = Metrics()
        metrics.counter("nexus_x_requests_total", "Requests.", ["pool"]).labels("a").inc(requests)
        metrics.histogram("nexus_x_latency_seconds", "Latency.").observe(0.002 * requests)
        registries.append(metrics)
    worker_metrics.publish(str(tmp_path), 1, registries[1])
    merged = worker_metrics.all_workers_exposition(str(tmp_path), 0, registries[0]).decode()
    families = {f.name: f for f in text_string_to_metric_families(merged)}
    totals = {s.labels["worker"]: s.value for s in families["nexus_x_requests"].samples if s.name.endswith("_total")}
    assert totals == {"0": 3.0, "1": 4.0}
    counts = {s.labels["worker"]: s.value for s in families["nexus_x_latency_seconds"].samples
              if s.name.endswith("_count")}
    assert counts == {"0": 1.0, "1": 1.0}
    worker_metrics.withdraw(str(tmp_path), 1)
    alone = worker_metrics.all_workers_exposition(str(tmp_path), 0, registries[0]).decode()
    assert 'worker="1"' not in alone and 'worker="0"' in alone


async def test_backends_removed_by_a_reload_leave_the_metrics() -> None:
    backends = [BackendHealth("redis", "c/a", "h:1", True), BackendHealth("redis", "c/b", "h:2", True)]

    async def probe(timeout: float) -> list[BackendHealth]:
        return list(backends)

    state = make_state({"redis": probe})
    await state.health.check_all()
    assert 'backend="c/b"' in state.metrics.exposition().decode()
    backends.pop()
    await state.health.check_all()
    text = state.metrics.exposition().decode()
    assert 'backend="c/a"' in text and 'backend="c/b"' not in text
