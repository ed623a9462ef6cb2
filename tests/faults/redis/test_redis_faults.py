"""Node failures under load: ejection, the others keep serving, replication_factor 2 keeps every acknowledged
write, and a restarted node comes back into the ring."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator

import pytest
import redis.asyncio as aioredis
import redis.exceptions

from nexus_fast._testing.faultproxy import FaultProxy
from nexus_fast._testing.ports import free_port
from nexus_fast._testing.redis import RedisNodes
from nexus_fast.config.load import validate
from nexus_fast.observe.metrics import Metrics
from nexus_fast.redis.plane import create_plane


@pytest.fixture
def fault_nodes() -> Iterator[RedisNodes]:
    with RedisNodes(3) as nodes:
        yield nodes


@contextlib.asynccontextmanager
async def proxy(nodes: RedisNodes, **extra):
    port = free_port()
    # murmur: the nodes' free ports change the ring names each run, and twemproxy's fnv1a_64 can then put most
    # of these similar keys on one node; the faults below need every node to own keys.
    pool = {"listen": f"127.0.0.1:{port}", "servers": nodes.servers(), "hash": "murmur", "auto_eject_hosts": True,
            "server_failure_limit": 1, "server_retry_timeout": "300ms", "timeout": "500ms",
            "health_check_interval": "200ms", **extra}
    plane = create_plane(validate({"redis": {"pools": {"cache": pool}}}, "t"), Metrics())
    await plane.start()
    try:
        yield plane, port
    finally:
        await plane.close()


async def wait_until(predicate, timeout: float = 10.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not predicate():
        assert asyncio.get_running_loop().time() < deadline, "condition not reached in time"
        await asyncio.sleep(0.05)


async def pipelined_load(port: int, prefix: str, stop: asyncio.Event, acked: list[str], failed: list[str]):
    client = aioredis.Redis(port=port, socket_timeout=5)
    try:
        batch = 0
        while not stop.is_set():
            keys = [f"{prefix}:{batch}:{i}" for i in range(50)]
            async with client.pipeline(transaction=False) as pipe:
                for key in keys:
                    pipe.set(key, key)
                results = await pipe.execute(raise_on_error=False)
            for key, result in zip(keys, results, strict=True):
                (acked if result is True else failed).append(key)
            batch += 1
            await asyncio.sleep(0.005)
    finally:
        await client.aclose()


async def test_node_killed_under_load_is_ejected_and_comes_back(fault_nodes):
    async with proxy(fault_nodes) as (plane, port):
        router = plane.pools["cache"].router
        stop = asyncio.Event()
        acked: list[str] = []
        failed: list[str] = []
        load = asyncio.create_task(pipelined_load(port, "r1", stop, acked, failed))
        await asyncio.sleep(0.3)
        await asyncio.to_thread(fault_nodes[1].kill)
        await wait_until(lambda: router.nodes[1].ejected)
        ejected_at = len(acked)
        await asyncio.sleep(0.5)
        assert len(acked) > ejected_at + 100  # the other nodes keep serving
        stop.set()
        await load
        # after ejection the ring holds nodes 0 and 2 only: new writes all succeed
        client = aioredis.Redis(port=port)
        try:
            for i in range(50):
                assert await client.set(f"after:{i}", "x") is True
            assert router.ring.lookup(b"after:1") != 1
            await asyncio.to_thread(fault_nodes[1].start)
            await wait_until(lambda: not router.nodes[1].ejected)
            owners = {router.ring.lookup(b"back:%d" % i) for i in range(200)}
            assert 1 in owners  # back in the ring
            for i in range(50):
                assert await client.set(f"back:{i}", "y") is True
        finally:
            await client.aclose()
        assert plane.pools["cache"].router.nodes[1].ejections >= 1


async def test_replication_factor_2_loses_no_acknowledged_write(fault_nodes):
    async with proxy(fault_nodes, replication_factor=2) as (plane, port):
        router = plane.pools["cache"].router
        stop = asyncio.Event()
        acked: list[str] = []
        failed: list[str] = []
        load = asyncio.create_task(pipelined_load(port, "r2", stop, acked, failed))
        await asyncio.sleep(0.3)
        await asyncio.to_thread(fault_nodes[2].kill)
        await wait_until(lambda: router.nodes[2].ejected)
        await asyncio.sleep(0.3)
        stop.set()
        await load
        assert len(acked) > 500
        client = aioredis.Redis(port=port)
        try:
            values = []
            for start in range(0, len(acked), 500):
                values += await client.mget(acked[start:start + 500])
            missing = [k for k, v in zip(acked, values, strict=True) if v != k.encode()]
            assert missing == []
            # the node restarts empty; reads fall through its misses to the surviving replica
            await asyncio.to_thread(fault_nodes[2].start)
            await wait_until(lambda: not router.nodes[2].ejected)
            for key in acked[:: max(1, len(acked) // 300)]:
                assert await client.get(key) == key.encode()
        finally:
            await client.aclose()


async def test_dead_node_without_ejection_fails_fast_with_clear_error(fault_nodes):
    async with proxy(fault_nodes, auto_eject_hosts=False) as (plane, port):
        router = plane.pools["cache"].router
        await asyncio.to_thread(fault_nodes[0].kill)
        client = aioredis.Redis(port=port)
        try:
            key = next(f"k{i}" for i in range(1000) if router.ring.lookup(b"k%d" % i) == 0)
            other = next(f"k{i}" for i in range(1000) if router.ring.lookup(b"k%d" % i) == 1)
            with pytest.raises(redis.exceptions.ResponseError, match="nexus-fast"):
                await asyncio.wait_for(client.get(key), 2)
            assert await client.set(other, "fine") is True
        finally:
            await client.aclose()


async def test_slow_node_is_ejected_as_latency_outlier(fault_nodes):
    """A node that answers, but 30 ms late (behind a delaying fault proxy), is ejected on latency alone and the
    others keep serving; it stays out for server_retry_timeout like a failed node."""
    with FaultProxy(fault_nodes[1].host, fault_nodes[1].port) as slow:
        slow.delay(0.03)
        servers = [fault_nodes[0].address + ":1", f"127.0.0.1:{slow.port}:1", fault_nodes[2].address + ":1"]
        port = free_port()
        pool = {"listen": f"127.0.0.1:{port}", "servers": servers, "hash": "murmur", "auto_eject_hosts": True,
                "server_retry_timeout": "30s", "timeout": "1s", "outlier_detection": True,
                "outlier_latency_factor": 4.0, "outlier_min_latency": "5ms"}
        plane = create_plane(validate({"redis": {"pools": {"cache": pool}}}, "t"), Metrics())
        await plane.start()
        try:
            router = plane.pools["cache"].router
            stop = asyncio.Event()
            acked: list[str] = []
            failed: list[str] = []
            load = asyncio.create_task(pipelined_load(port, "slow", stop, acked, failed))
            await wait_until(lambda: router.nodes[1].ejected)
            node = router.nodes[1]
            assert node.ejected_for_latency and node.outlier_ejections == 1 and node.failures == 0
            assert node.latency.ewma > 4 * max(router.nodes[0].latency.ewma, router.nodes[2].latency.ewma)
            served = len(acked)
            await asyncio.sleep(0.5)
            stop.set()
            await load
            assert len(acked) > served + 100 and failed == []  # nothing failed: slow is not broken
            assert {router.ring.lookup(b"after:%d" % i) for i in range(100)} == {0, 2}
            assert not router.nodes[0].ejected and not router.nodes[2].ejected
        finally:
            await plane.close()


async def test_outlier_detection_off_by_default_keeps_a_slow_node(fault_nodes):
    with FaultProxy(fault_nodes[1].host, fault_nodes[1].port) as slow:
        slow.delay(0.03)
        servers = [fault_nodes[0].address + ":1", f"127.0.0.1:{slow.port}:1", fault_nodes[2].address + ":1"]
        async with proxy(fault_nodes, servers=servers) as (plane, port):
            router = plane.pools["cache"].router
            stop = asyncio.Event()
            acked: list[str] = []
            load = asyncio.create_task(pipelined_load(port, "keep", stop, acked, []))
            await wait_until(lambda: router.nodes[1].latency.batches >= 40)
            await asyncio.sleep(1.2)  # at least one metrics pass, where outlier detection would run
            stop.set()
            await load
            assert not router.nodes[1].ejected and router.nodes[1].latency.ewma > 0.02
