"""Fixtures for the Redis plane's integration tests: real redis-server nodes, a real cluster, the proxy in-process."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest

from nexus_fast._testing.ports import free_port
from nexus_fast._testing.redis import RedisCluster, RedisNodes
from nexus_fast.config.load import validate
from nexus_fast.observe.metrics import Metrics
from nexus_fast.redis.plane import RedisPlane, create_plane


@pytest.fixture(scope="session")
def redis_nodes() -> Iterator[RedisNodes]:
    with RedisNodes(3) as nodes:
        yield nodes


@pytest.fixture
def nodes(redis_nodes: RedisNodes) -> RedisNodes:
    """The three nodes, emptied and running (a fault test may have killed one)."""
    for node in redis_nodes.nodes:
        if node.process is None or node.process.poll() is not None:
            node.start()
        node.cli("flushall")
    return redis_nodes


@pytest.fixture(scope="session")
def redis_cluster() -> Iterator[RedisCluster]:
    with RedisCluster() as cluster:
        yield cluster


@contextlib.asynccontextmanager
async def run_proxy(pool: dict[str, Any], name: str = "cache") -> AsyncIterator[tuple[RedisPlane, int]]:
    """The Redis plane in-process on the test's loop, one pool on a free port; always closed."""
    port = free_port()
    pool = {"listen": f"127.0.0.1:{port}", **pool}
    config = validate({"redis": {"pools": {name: pool}}}, "test")
    plane = create_plane(config, Metrics())
    await plane.start()
    try:
        yield plane, port
    finally:
        await plane.close()
