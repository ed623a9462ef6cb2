"""The proxy in cluster mode over the harness's Redis Cluster (3 masters + 3 replicas)."""

from __future__ import annotations

import asyncio

import pytest
import redis.asyncio as aioredis
import redis.exceptions

from nexus_fast.balance.ring import key_slot
from tests.integration.redis.conftest import run_proxy


async def test_cluster_routing_split_and_redirects(redis_cluster):
    pool = {"mode": "cluster", "servers": redis_cluster.seeds(), "cluster_refresh_interval": "30s"}
    async with run_proxy(pool) as (plane, port):
        client = aioredis.Redis(port=port)
        try:
            async with client.pipeline(transaction=False) as pipe:
                for i in range(500):
                    pipe.set(f"ck:{i}", i)
                assert all(await pipe.execute())
            assert await client.get("ck:42") == b"42"
            keys = [f"ck:{i}" for i in range(0, 500, 7)]
            assert await client.mget(keys) == [str(i).encode() for i in range(0, 500, 7)]
            assert await client.delete(*keys[:10]) == 10
            try:
                await client.rename("ck:1", "ck:2")
                raise AssertionError("CROSSSLOT expected")
            except redis.exceptions.ResponseError as exc:
                assert "CROSSSLOT" in str(exc) or "same slot" in str(exc)
            await client.set("{acct}:a", "1")
            assert await client.rename("{acct}:a", "{acct}:b") is True

            # Scramble the proxy's slot map: every request now lands on a wrong master and must follow MOVED.
            router = plane.pools["cache"].router
            masters = list({id(n): n for n in router.slots if n is not None}.values())
            assert len(masters) == 3
            router.slots = [masters[(masters.index(n) + 1) % 3] if n is not None else None for n in router.slots]
            before = router.refreshes
            assert await client.get("ck:100") == b"100"
            assert await client.mget("ck:200", "ck:300") == [b"200", b"300"]
            for _ in range(100):
                if router.refreshes > before:
                    break
                await asyncio.sleep(0.02)
            assert router.refreshes > before  # a MOVED triggers a topology refresh
        finally:
            await client.aclose()
    # keys really live in the cluster, on the master that owns their slot
    owner_found = False
    for node in redis_cluster.nodes[:6]:
        info = node.cli("cluster", "keyslot", "ck:43").strip()
        assert int(info) == key_slot(b"ck:43")
        if node.cli("get", "ck:43").strip() == "43":
            owner_found = True
    assert owner_found


async def test_cluster_reads_from_replicas(redis_cluster):
    pool = {"mode": "cluster", "servers": redis_cluster.seeds(), "read_from_replicas": True}
    async with run_proxy(pool) as (plane, port):
        client = aioredis.Redis(port=port)
        try:
            await client.set("replicated", "yes")
            await asyncio.sleep(0.2)  # asynchronous replication
            for _ in range(5):
                assert await client.get("replicated") == b"yes"
            router = plane.pools["cache"].router
            replicas = [n for n in router.nodes if n.replica]
            assert replicas and sum(n.requests for n in replicas) >= 1
        finally:
            await client.aclose()


async def test_slot_map_from_cluster_shards_matches_cluster_slots(redis_cluster):
    """Redis 7 answers CLUSTER SHARDS: the router reads the map from it, and the map is the one CLUSTER SLOTS gives."""
    from nexus_fast.redis.router import ranges_from_shards, ranges_from_slots

    pool = {"mode": "cluster", "servers": redis_cluster.seeds(), "read_from_replicas": True}
    async with run_proxy(pool) as (plane, port):
        router = plane.pools["cache"].router
        assert router.topology_command == "shards" and router.refreshes >= 1
        host, port_text = redis_cluster.seeds()[0].split(":")[:2]
        shards = await router._query(host, int(port_text), [b"CLUSTER", b"SHARDS"])
        slots = await router._query(host, int(port_text), [b"CLUSTER", b"SLOTS"])

        def normal(ranges):
            return sorted((a, b, m, sorted(r)) for a, b, m, r in ranges)

        assert normal(ranges_from_shards(shards)) == normal(ranges_from_slots(slots))
        assert sum(b - a + 1 for a, b, _, _ in ranges_from_shards(shards)) == 16384
        assert all(len(r) == 1 for _, _, _, r in ranges_from_shards(shards))  # each master's replica is online
        assert all(router.replica_slots[s] for s in range(0, 16384, 97))
        client = aioredis.Redis(port=port)
        try:
            assert await client.set("shards:k", "v") is True
            assert await client.get("shards:k") == b"v"
        finally:
            await client.aclose()


async def test_cluster_transaction_on_one_slot(redis_cluster):
    pool = {"mode": "cluster", "servers": redis_cluster.seeds()}
    async with run_proxy(pool) as (_plane, port):
        client = aioredis.Redis(port=port)
        try:
            async with client.pipeline(transaction=True) as pipe:
                pipe.set("{order:7}:state", "paid").incr("{order:7}:version").get("{order:7}:state")
                assert await pipe.execute() == [True, 1, b"paid"]
            async with client.pipeline(transaction=True) as pipe:
                pipe.set("{order:7}:state", "x").set("{order:8}:state", "y")
                with pytest.raises(redis.exceptions.ResponseError, match="same slot"):
                    await pipe.execute()
            assert await client.get("{order:7}:state") == b"paid"
        finally:
            await client.aclose()


async def test_resp3_client_keeps_resp3_across_moved(redis_cluster):
    """A redirect is followed over a connection of the client's RESP version: a RESP3 client asking HGETALL through
    a scrambled slot map still gets a map (%), not RESP2's flat array."""
    pool = {"mode": "cluster", "servers": redis_cluster.seeds(), "cluster_refresh_interval": "30s"}
    async with run_proxy(pool) as (plane, port):
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            writer.write(b"HELLO 3\r\nHSET {h}:1 f v\r\n")
            assert (await asyncio.wait_for(reader.readuntil(b"modules\r\n*0\r\n"), 2)).startswith(b"%")
            assert await asyncio.wait_for(reader.readline(), 2) == b":1\r\n"
            router = plane.pools["cache"].router
            masters = list({id(n): n for n in router.slots if n is not None}.values())
            router.slots = [masters[(masters.index(n) + 1) % 3] if n is not None else None for n in router.slots]
            writer.write(b"HGETALL {h}:1\r\n")
            reply = await asyncio.wait_for(reader.readexactly(len(b"%1\r\n$1\r\nf\r\n$1\r\nv\r\n")), 2)
            assert reply == b"%1\r\n$1\r\nf\r\n$1\r\nv\r\n"
        finally:
            writer.close()
            await writer.wait_closed()
