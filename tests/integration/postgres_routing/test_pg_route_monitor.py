"""The replica monitor against a real primary + hot standby: lag taken out and back in, a dead replica banned."""

from __future__ import annotations

import asyncio
import time

from nexus_fast._testing.postgres import PostgresCluster
from nexus_fast.postgres.config import PostgresConfig
from nexus_fast.postgres.route import ClientRouteState
from nexus_fast.postgres.router import Router


def _router(cluster: PostgresCluster, **db: object) -> Router:
    pg = PostgresConfig.model_validate({
        "replica_check_interval": "100ms",
        "replica_check_timeout": "1s",
        "databases": {"postgres": {"servers": [
            {"host": "127.0.0.1", "port": cluster.primary.port, "role": "primary"},
            {"host": "127.0.0.1", "port": cluster.standby.port, "role": "replica"},
        ], **db}},
    })
    return Router("postgres", pg.databases["postgres"], pg)


async def _until(predicate, timeout: float = 10.0) -> float:  # type: ignore[no-untyped-def]
    start = time.monotonic()
    while not predicate():
        if time.monotonic() - start > timeout:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.05)
    return time.monotonic() - start


def _role(router: Router) -> str:
    return router.route("SELECT 1", ClientRouteState("postgres", "postgres")).role


async def test_lagging_replica_is_taken_out_until_it_catches_up(pg_cluster: PostgresCluster) -> None:
    router = _router(pg_cluster, max_replica_lag="1s")
    await router.start()
    try:
        assert router.monitor is not None and router.monitor.polls >= 1
        assert _role(router) == "replica"
        assert router.replicas[0].lag_s == 0.0  # idle primary, caught-up standby: no lag however old the last commit
        await asyncio.to_thread(pg_cluster.primary.execute, "CREATE TABLE IF NOT EXISTS lag_t (x int)")
        await asyncio.to_thread(pg_cluster.pause_replay)
        await asyncio.to_thread(pg_cluster.primary.execute, "INSERT INTO lag_t VALUES (1)")
        await _until(lambda: router.replicas[0].lagging)
        assert _role(router) == "primary"
        assert router.health()[0].reason.startswith("replica lag")
        await asyncio.to_thread(pg_cluster.resume_replay)
        await _until(lambda: not router.replicas[0].lagging)
        assert _role(router) == "replica"
    finally:
        await router.close()


async def test_stopped_replica_is_banned_and_reads_go_to_the_primary(pg_cluster: PostgresCluster) -> None:
    router = _router(pg_cluster, ban_time="1s")
    await router.start()
    try:
        assert _role(router) == "replica"
        await asyncio.to_thread(pg_cluster.standby.stop, "immediate")
        took = await _until(lambda: _role(router) == "primary", timeout=5)
        assert took < 2.0
        assert "health check" in router.health()[0].reason
        await asyncio.to_thread(pg_cluster.standby.start)
        await _until(lambda: _role(router) == "replica", timeout=10)
    finally:
        await router.close()
    assert router.monitor is None


async def test_a_promoted_replica_keeps_serving_reads_and_says_so() -> None:
    from nexus_fast._testing.postgres import postgres_cluster

    with postgres_cluster(standbys=1) as cluster:
        router = _router(cluster)
        await router.start()
        try:
            await asyncio.to_thread(cluster.standby.promote)
            assert cluster.standby.execute("SELECT pg_is_in_recovery()") == "f"
            await _until(lambda: not router.replicas[0].in_recovery)
            assert _role(router) == "replica"  # still serving reads, lag 0
            assert router.replicas[0].lag_s == 0.0
            assert router.health()[0].reason == "not in recovery (promoted?)"
        finally:
            await router.close()
