"""The proxy over three real redis-server nodes (ring mode), driven by redis-py (asyncio), redis-cli and
redis-benchmark."""

from __future__ import annotations

import asyncio
import os
import socket
import time

import pytest
import redis.asyncio as aioredis
import redis.exceptions

from nexus_fast._testing.ports import free_port
from nexus_fast.balance.ring import KetamaRing
from nexus_fast.cache.codec import MARKER
from nexus_fast.config.load import load_config, validate
from nexus_fast.observe.metrics import Metrics
from nexus_fast.redis.plane import create_plane
from tests.integration.redis.conftest import run_proxy

# The nodes listen on free ports, so their ring names change from run to run. twemproxy's 32-bit "fnv1a_64" puts
# short keys that differ in their last bytes close together, and for some port sets all of them fell into one
# node's arc (a flaky spread test); murmur mixes well whatever the names. fnv1a_64 placement is proved separately
# against real nutcracker (test_redis_twemproxy_placement.py).
HASH = "murmur"


def ring_for(nodes, **kw):
    return KetamaRing([(n.address, 1) for n in nodes.nodes], hash=HASH, **kw)


async def test_keys_spread_by_the_ring(nodes):
    async with run_proxy({"servers": nodes.servers(), "hash": HASH}) as (_plane, port):
        client = aioredis.Redis(port=port)
        try:
            async with client.pipeline(transaction=False) as pipe:
                for i in range(600):
                    pipe.set(f"key:{i}", f"value:{i}")
                assert all(await pipe.execute())
            assert await client.get("key:17") == b"value:17"
        finally:
            await client.aclose()
    ring = ring_for(nodes)
    sizes = [int(n.cli("dbsize")) for n in nodes.nodes]
    assert sum(sizes) == 600 and all(s > 30 for s in sizes)  # every node holds a share
    for i in range(0, 600, 37):
        owner = nodes[ring.lookup(b"key:%d" % i)]
        assert owner.cli("get", f"key:{i}").strip() == f"value:{i}"


async def test_multi_key_split_and_merge(nodes):
    async with run_proxy({"servers": nodes.servers(), "hash": HASH}) as (_plane, port):
        client = aioredis.Redis(port=port)
        try:
            keys = [f"{i}-m" for i in range(40)]
            assert await client.mset({k: k.upper() for k in keys}) is True
            ring = ring_for(nodes)
            assert len({ring.lookup(k.encode()) for k in keys}) == 3  # really across the nodes
            got = await client.mget(["nope", *keys[:20], "missing"])
            assert got == [None, *[k.upper().encode() for k in keys[:20]], None]
            assert await client.exists(*keys[:10], "nope") == 10
            assert await client.touch(*keys[:5]) == 5
            assert await client.delete(*keys[:25], "nope") == 25
            assert await client.unlink(*keys[25:]) == 15
            assert await client.mget(keys[:3]) == [None, None, None]
        finally:
            await client.aclose()


async def test_same_node_commands_checked(nodes):
    async with run_proxy({"servers": nodes.servers(), "hash_tag": "{}", "hash": HASH}) as (_plane, port):
        client = aioredis.Redis(port=port)
        try:
            ring = ring_for(nodes, hash_tag="{}")
            a, b = next((f"a{i}", f"b{i}") for i in range(100)
                        if ring.lookup(b"a%d" % i) != ring.lookup(b"b%d" % i))
            await client.set(a, "1")
            try:
                await client.rename(a, b)
                raise AssertionError("rename across nodes must fail")
            except redis.exceptions.ClusterCrossSlotError as exc:  # redis-py's class for -CROSSSLOT
                assert "same node" in str(exc)
            await client.set("{u1}:x", "1")
            assert await client.rename("{u1}:x", "{u1}:y") is True
            await client.sadd("{t}a", "1", "2")
            await client.sadd("{t}b", "2", "3")
            assert await client.sunionstore("{t}c", ["{t}a", "{t}b"]) == 3
            assert await client.eval("return redis.call('GET', KEYS[1])", 1, "{u1}:y") == b"1"
        finally:
            await client.aclose()


async def test_unsupported_commands_answered_at_once(nodes):
    async with run_proxy({"servers": nodes.servers(), "timeout": "2s"}) as (_plane, port):
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            for command in (b"BLPOP q 0", b"SUBSCRIBE ch", b"WATCH k", b"FLUSHALL", b"KEYS *", b"XREAD BLOCK 0 STREAMS s $",
                            b"NOSUCH cmd", b"GET"):
                started = time.monotonic()
                writer.write(command + b"\r\n")
                line = await asyncio.wait_for(reader.readline(), 1.0)
                assert line.startswith(b"-ERR"), (command, line)
                assert time.monotonic() - started < 0.5
            writer.write(b"PING\r\nECHO hi\r\nSELECT 0\r\nSELECT 1\r\n")
            assert await reader.readline() == b"+PONG\r\n"
            assert await reader.readline() == b"$2\r\n"
            assert await reader.readline() == b"hi\r\n"
            assert await reader.readline() == b"+OK\r\n"
            assert (await reader.readline()).startswith(b"-ERR")
            writer.write(b"*1\r\n$3\r\nGET\r\n*x\r\n")  # garbage: a protocol error, then the connection closes
            assert (await reader.readline()).startswith(b"-ERR wrong number")
            assert (await reader.readline()).startswith(b"-ERR Protocol error")
            assert await asyncio.wait_for(reader.read(), 2.0) == b""
        finally:
            writer.close()
            await writer.wait_closed()


async def test_deep_pipeline_and_resp3(nodes):
    async with run_proxy({"servers": nodes.servers()}) as (_plane, port):
        client = aioredis.Redis(port=port, protocol=3)
        try:
            async with client.pipeline(transaction=False) as pipe:
                for i in range(3000):
                    pipe.incr(f"c:{i % 50}")
                results = await pipe.execute()
            assert results[-1] == 60
            await client.hset("h", mapping={"a": "1", "b": "2"})
            assert await client.hgetall("h") == {b"a": b"1", b"b": b"2"}
            assert await client.get("missing") is None
        finally:
            await client.aclose()


async def test_auth_password_and_acl_users(nodes):
    pool = {"servers": nodes.servers(), "password": "pw", "users": {"alice": "wonder"}}
    async with run_proxy(pool) as (_plane, port):
        anonymous = aioredis.Redis(port=port)
        good = aioredis.Redis(port=port, password="pw")
        alice = aioredis.Redis(port=port, username="alice", password="wonder")
        bad = aioredis.Redis(port=port, username="alice", password="nope")
        try:
            try:
                await anonymous.get("x")
                raise AssertionError("NOAUTH expected")
            except redis.exceptions.AuthenticationError:
                pass
            await good.set("x", "1")
            assert await alice.get("x") == b"1"
            try:
                await bad.get("x")
                raise AssertionError("WRONGPASS expected")
            except redis.exceptions.AuthenticationError:
                pass
        finally:
            for c in (anonymous, good, alice, bad):
                await c.aclose()


async def test_backend_auth_from_config():
    from nexus_fast._testing.redis import RedisNodes

    with RedisNodes(1, password="backend-secret") as locked:
        async with run_proxy({"servers": locked.servers(), "backend_password": "backend-secret"}) as (_p, port):
            client = aioredis.Redis(port=port)
            try:
                await client.set("k", "v")
                assert await client.get("k") == b"v"
            finally:
                await client.aclose()
        assert locked[0].cli("get", "k").strip() == "v"


async def test_transparent_compression(nodes):
    async with run_proxy({"servers": nodes.servers(), "hash": HASH, "compression": True,
                          "compression_threshold": "1KiB"}) as (plane, port):
        client = aioredis.Redis(port=port)
        try:
            big = b"transaction-record;" * 500
            small = b"tiny"
            tricky = MARKER + b"looks compressed but is not"
            await client.set("big", big)
            await client.mset({"small": small, "tricky": tricky, "big2": big})
            assert await client.get("big") == big
            assert await client.mget("big", "small", "tricky", "big2", "none") == [big, small, tricky, big, None]
            assert await client.getset("big", big + b"!") == big
            assert await client.get("big") == big + b"!"
            ring = ring_for(nodes)
            owner = nodes[ring.lookup(b"big2")]
            stored = await asyncio.to_thread(owner.cli, "strlen", "big2")
            assert int(stored) < len(big) // 5
            pool = plane.pools["cache"]
            assert pool.router.codec.stats.ratio > 5
            pool.metrics.collect(pool)
            text = plane.metrics.bytes_in._name  # registered
            assert text
        finally:
            await client.aclose()


async def test_request_timeout_is_a_clear_error(nodes):
    # a "node" that accepts and never answers
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(16)
    host, port_ = silent.getsockname()
    try:
        async with run_proxy({"servers": [f"{host}:{port_}:1"], "timeout": "300ms",
                              "health_check_interval": "0"}) as (_plane, port):
            client = aioredis.Redis(port=port)
            try:
                started = time.monotonic()
                try:
                    await client.get("x")
                    raise AssertionError("timeout expected")
                except redis.exceptions.ResponseError as exc:
                    assert "timeout" in str(exc) and "300ms" in str(exc)
                assert time.monotonic() - started < 1.5
            finally:
                await client.aclose()
    finally:
        silent.close()


async def test_redis_cli_and_benchmark_from_nutcracker_yml(nodes, tmp_path):
    from nexus_fast._testing.ports import free_port

    port = free_port()
    yml = tmp_path / "nutcracker.yml"
    servers = "\n".join(f"   - {s}" for s in nodes.servers())
    yml.write_text(f"alpha:\n  listen: 127.0.0.1:{port}\n  hash: fnv1a_64\n  distribution: ketama\n"
                   f"  redis: true\n  timeout: 1000\n  servers:\n{servers}\n")
    plane = create_plane(load_config(str(yml)).config, Metrics())
    await plane.start()
    try:
        async def run(*args: str) -> str:
            proc = await asyncio.create_subprocess_exec(*args, stdout=asyncio.subprocess.PIPE,
                                                        stderr=asyncio.subprocess.PIPE)
            out, _ = await asyncio.wait_for(proc.communicate(), 30)
            assert proc.returncode == 0
            return out.decode()

        assert (await run("redis-cli", "-p", str(port), "set", "cli", "ok")).strip() == "OK"
        assert (await run("redis-cli", "-p", str(port), "get", "cli")).strip() == "ok"
        out = await run("redis-benchmark", "-p", str(port), "-n", "2000", "-c", "10", "-t", "get,set", "-q",
                        "-P", "4")
        assert "SET:" in out and "GET:" in out and "requests per second" in out
    finally:
        await plane.close()
    assert os.path.exists(yml)


async def test_node_latency_bytes_and_error_replies_on_metrics(nodes):
    metrics = Metrics()
    port = free_port()
    config = validate({"redis": {"pools": {"cache": {"listen": f"127.0.0.1:{port}", "servers": nodes.servers(),
                                                     "hash": HASH}}}}, "t")
    plane = create_plane(config, metrics)
    await plane.start()
    try:
        client = aioredis.Redis(port=port)
        try:
            async with client.pipeline(transaction=False) as pipe:
                for i in range(300):
                    pipe.set(f"lat:{i}", "v" * 10)
                await pipe.execute()
            for i in range(30):
                await client.get(f"lat:{i}")
            with pytest.raises(redis.exceptions.ResponseError):
                await client.incr("lat:0")  # "v"*10 is not an integer: one error reply from its node
        finally:
            await client.aclose()
        pool = plane.pools["cache"]
        pool.metrics.collect(pool)
        text = metrics.exposition().decode()
    finally:
        await plane.close()
    samples = {}
    for line in text.splitlines():
        if line.startswith("nexus_redis_") and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            samples[name] = float(value)

    def per_node(metric: str) -> list[float]:
        # a counter's labelled child appears once it has been incremented
        return [samples.get(f'{metric}{{node="{n.address}",pool="cache"}}', 0.0) for n in nodes.nodes]

    counts = per_node("nexus_redis_request_duration_seconds_count")
    assert sum(counts) >= 331 and all(c > 0 for c in counts)  # every request timed, on the node that served it
    inf = [samples[f'nexus_redis_request_duration_seconds_bucket{{le="+Inf",node="{n.address}",pool="cache"}}']
           for n in nodes.nodes]
    assert inf == counts
    assert all(0 < s < c for s, c in zip(per_node("nexus_redis_request_duration_seconds_sum"), counts, strict=True))
    assert sum(per_node("nexus_redis_node_bytes_sent_total")) > 300 * 30  # 300 SETs of ~40 bytes each
    assert sum(per_node("nexus_redis_node_bytes_received_total")) >= 300 * 5  # "+OK\r\n" each
    assert sum(per_node("nexus_redis_node_error_replies_total")) == 1
    assert all(e > 0 for e in per_node("nexus_redis_node_latency_ewma_seconds"))


async def test_multi_exec_on_one_node(nodes):
    async with run_proxy({"servers": nodes.servers(), "hash": HASH, "hash_tag": "{}"}) as (plane, port):
        client = aioredis.Redis(port=port)
        try:
            async with client.pipeline(transaction=True) as pipe:  # MULTI, the commands, EXEC
                pipe.set("{t}:a", 1).incr("{t}:a").get("{t}:a").sadd("{t}:s", "x")
                assert await pipe.execute() == [True, 2, b"2", 1]
            owner = nodes[plane.pools["cache"].router.ring.lookup(b"t")]
            assert owner.cli("get", "{t}:a").strip() == "2"  # ran on the node that owns the tag

            ring = plane.pools["cache"].router.ring
            other = next(f"k{i}" for i in range(100) if ring.lookup(b"k%d" % i) != ring.lookup(b"t"))
            async with client.pipeline(transaction=True) as pipe:
                pipe.set("{t}:a", 5).set(other, 5)
                with pytest.raises(redis.exceptions.ResponseError, match="Keys in transaction don't hash"):
                    await pipe.execute()
            assert await client.get("{t}:a") == b"2"  # nothing of a refused transaction ran
        finally:
            await client.aclose()

        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            async def say(line: bytes) -> bytes:
                writer.write(line + b"\r\n")
                return await asyncio.wait_for(reader.readline(), 2)

            assert (await say(b"EXEC")).startswith(b"-ERR EXEC without MULTI")
            assert await say(b"MULTI") == b"+OK\r\n"
            assert (await say(b"MULTI")).startswith(b"-ERR MULTI calls can not be nested")
            assert await say(b"INCR {t}:a") == b"+QUEUED\r\n"
            assert await say(b"DISCARD") == b"+OK\r\n"
            assert await say(b"MULTI") == b"+OK\r\n"
            assert await say(b"INCR {t}:a") == b"+QUEUED\r\n"
            assert (await say(b"BLPOP {t}:q 0")).startswith(b"-ERR nexus-fast: 'BLPOP' cannot join")
            assert (await say(b"EXEC")).startswith(b"-EXECABORT")
            assert await say(b"GET {t}:a") == b"$1\r\n" and await reader.readline() == b"2\r\n"
            assert await say(b"MULTI") == b"+OK\r\n"
            assert await say(b"EXEC") == b"*0\r\n"
        finally:
            writer.close()
            await writer.wait_closed()


async def test_transactions_are_atomic_among_pipelined_clients(nodes):
    """Many clients share one server connection; a transaction's commands still run back to back."""
    async with run_proxy({"servers": nodes.servers(), "hash": HASH, "hash_tag": "{}"}) as (_plane, port):
        async def worker(n: int) -> None:
            client = aioredis.Redis(port=port)
            try:
                for _ in range(30):
                    if n % 2:
                        async with client.pipeline(transaction=True) as pipe:
                            pipe.incr("{acct}:balance").decr("{acct}:balance").incr("{acct}:ops")
                            balance, _, _ = await pipe.execute()
                            assert balance == 1  # no other client's INCR fell between our INCR and DECR
                    else:
                        await client.incr("{acct}:ops")
            finally:
                await client.aclose()

        await asyncio.gather(*(worker(n) for n in range(8)))
        client = aioredis.Redis(port=port)
        try:
            assert await client.get("{acct}:ops") == b"240" and await client.get("{acct}:balance") == b"0"
        finally:
            await client.aclose()


async def test_near_cache_served_from_memory_and_invalidated_by_tracking(nodes):
    pool = {"servers": nodes.servers(), "hash": HASH, "near_cache": True, "near_cache_size": "1MiB"}
    async with run_proxy(pool) as (plane, port):
        near = plane.pools["cache"].router.near
        ring = plane.pools["cache"].router.ring
        client = aioredis.Redis(port=port, protocol=2)  # RESP2: the proxy answers from its RESP3 connection
        try:
            assert await client.set("nc:1", "one") is True
            assert await client.get("nc:1") == b"one"  # miss: fetched over the tracked connection, kept
            owner = nodes[ring.lookup(b"nc:1")]
            before = int(owner.cli("info", "stats").split("total_commands_processed:")[1].split()[0])
            for _ in range(20):
                assert await client.get("nc:1") == b"one"
            after = int(owner.cli("info", "stats").split("total_commands_processed:")[1].split()[0])
            assert after - before <= 2  # the 20 GETs never reached the node (the INFO calls count themselves)
            assert near.hits >= 20

            owner.cli("set", "nc:1", "changed")  # written behind the proxy's back: Redis pushes an invalidation
            await wait_for_value(client, "nc:1", b"changed")
            assert near.invalidations >= 1

            assert await client.set("nc:1", "mine") is True  # through the proxy: dropped at once
            assert await client.get("nc:1") == b"mine"
            assert await client.get("nc:missing") is None  # RESP3 null turned into a RESP2 nil
            assert await client.mset({"nc:1": "m1", "nc:2": "m2"}) is True
            assert await client.mget(["nc:1", "nc:2"]) == [b"m1", b"m2"]
            assert await client.get("nc:1") == b"m1"

            owner.cli("flushall")  # a null invalidation: the whole cache goes
            await wait_for_value(client, "nc:1", None)
            assert near.flushes >= 1
        finally:
            await client.aclose()


async def test_near_cache_keeps_its_byte_budget(nodes):
    pool = {"servers": nodes.servers(), "hash": HASH, "near_cache": True, "near_cache_size": "64KiB"}
    async with run_proxy(pool) as (plane, port):
        near = plane.pools["cache"].router.near
        client = aioredis.Redis(port=port)
        try:
            async with client.pipeline(transaction=False) as pipe:
                for i in range(300):
                    pipe.set(f"b:{i}", "v" * 1000)
                await pipe.execute()
            for i in range(300):
                assert await client.get(f"b:{i}") == b"v" * 1000
            assert 0 < near.bytes <= 64 * 1024 and near.evictions > 0 and len(near) < 300
        finally:
            await client.aclose()


async def wait_for_value(client, key: str, value: bytes | None, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while (got := await client.get(key)) != value:
        assert time.monotonic() < deadline, f"{key} still {got!r}"
        await asyncio.sleep(0.01)


async def test_all_nodes_ejected_answers_no_live_node(nodes):
    async with run_proxy({"servers": nodes.servers(), "auto_eject_hosts": True,
                          "server_retry_timeout": "30s"}) as (plane, port):
        client = aioredis.Redis(port=port)
        try:
            assert await client.set("k", "v") is True  # the fast path, nodes live
            for node in plane.pools["cache"].router.nodes:
                node.eject()
            with pytest.raises(redis.exceptions.ResponseError, match="no live node"):
                await asyncio.wait_for(client.get("k"), 2)
        finally:
            await client.aclose()


async def test_near_cache_switches_off_when_a_node_refuses_tracking(nodes):
    """Without invalidations a near-cache would serve stale values forever: a node whose ACL forbids CLIENT turns
    it off, and GETs keep reaching the nodes."""
    for node in nodes.nodes:
        node.cli("acl", "setuser", "notrack", "on", ">pw", "~*", "+@all", "-client")
    try:
        pool = {"servers": nodes.servers(), "hash": HASH, "near_cache": True, "backend_username": "notrack",
                "backend_password": "pw"}
        async with run_proxy(pool) as (plane, port):
            router = plane.pools["cache"].router
            client = aioredis.Redis(port=port)
            try:
                assert await client.set("nt:1", "a") is True
                assert await client.get("nt:1") == b"a"
                for _ in range(50):
                    if router.near is None:
                        break
                    await asyncio.sleep(0.01)
                assert router.near is None
                nodes[router.ring.lookup(b"nt:1")].cli("set", "nt:1", "b")
                assert await client.get("nt:1") == b"b"  # read from the node, not from a stale copy
            finally:
                await client.aclose()
    finally:
        for node in nodes.nodes:
            node.cli("acl", "deluser", "notrack")


async def test_server_connections_spread_clients_and_keep_each_clients_order(nodes):
    pool = {"servers": nodes.servers()[:1], "server_connections": 3, "preconnect": True}
    async with run_proxy(pool) as (plane, port):
        node = plane.pools["cache"].router.nodes[0]

        async def client_run(n: int) -> None:
            client = aioredis.Redis(port=port)
            try:
                async with client.pipeline(transaction=False) as pipe:
                    for _ in range(50):
                        pipe.incr(f"sc:{n}")
                    pipe.mget([f"sc:{n}", "sc:none"])  # the split path takes the client's connection too
                    pipe.incr(f"sc:{n}")
                    results = await pipe.execute()
                assert results[:50] == list(range(1, 51)) and results[50] == [b"50", None] and results[51] == 51
            finally:
                await client.aclose()

        await asyncio.gather(*(client_run(n) for n in range(6)))
        # redis-py 8 speaks RESP3 (HELLO 3), so its commands travel the node's RESP3 connections
        used = [c for conns in node.conns.values() for c in conns if c is not None and c.written > 0]
        assert len(used) == 3  # six clients over the three connections
        assert sum(c.written for c in used) == 6 * 52 + 3  # and each connection's own HELLO 3
