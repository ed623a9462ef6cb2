"""Slot maps from CLUSTER SHARDS and CLUSTER SLOTS replies (as hiredis parses them), and the SLOTS fallback."""

from __future__ import annotations

import hiredis

from nexus_fast.redis.config import RedisPoolConfig
from nexus_fast.redis.router import ClusterRouter, ranges_from_shards, ranges_from_slots

SHARDS = [
    [b"slots", [0, 5460, 10000, 10010], b"nodes", [
        [b"id", b"a" * 40, b"port", 7000, b"ip", b"10.0.0.1", b"endpoint", b"db1.example", b"role", b"master",
         b"replication-offset", 14, b"health", b"online"],
        [b"id", b"b" * 40, b"port", 7003, b"ip", b"10.0.0.4", b"endpoint", b"10.0.0.4", b"role", b"replica",
         b"replication-offset", 14, b"health", b"online"],
        [b"id", b"c" * 40, b"port", 7006, b"ip", b"10.0.0.7", b"endpoint", b"?", b"role", b"replica",
         b"replication-offset", 0, b"health", b"loading"],
    ]],
    # a shard whose master failed over: no master listed yet, so it is skipped rather than mis-routed
    [b"slots", [5461, 9999], b"nodes", [
        [b"id", b"d" * 40, b"port", 7001, b"ip", b"10.0.0.2", b"endpoint", b"?", b"role", b"replica",
         b"replication-offset", 9, b"health", b"online"]]],
    # a RESP3 client would see maps; the parser takes both forms
    {b"slots": [10011, 16383], b"nodes": [{b"port": 7002, b"ip": b"10.0.0.3", b"endpoint": b"", b"role": b"master",
                                            b"health": b"online"}]},
]


def test_shards_reply_to_ranges():
    assert ranges_from_shards(SHARDS) == [
        (0, 5460, ("db1.example", 7000), [("10.0.0.4", 7003)]),
        (10000, 10010, ("db1.example", 7000), [("10.0.0.4", 7003)]),
        (10011, 16383, ("10.0.0.3", 7002), []),
    ]


def test_slots_reply_to_ranges():
    reply = [[0, 8191, [b"10.0.0.1", 7000, b"id1"], [b"10.0.0.4", 7003, b"id4"]],
             [8192, 16383, [b"10.0.0.2", 7001, b"id2"]]]
    assert ranges_from_slots(reply) == [(0, 8191, ("10.0.0.1", 7000), [("10.0.0.4", 7003)]),
                                        (8192, 16383, ("10.0.0.2", 7001), [])]


async def test_a_node_without_shards_makes_the_router_use_slots():
    """Redis 6 answers CLUSTER SHARDS with an error reply; the router falls back to CLUSTER SLOTS and stays there."""
    router = ClusterRouter("p", RedisPoolConfig(mode="cluster", servers=["127.0.0.1:7000:1"]))
    asked: list[bytes] = []

    async def redis6(host: str, port: int, args: list[bytes]):
        asked.append(args[1])
        reader = hiredis.Reader()
        if args[1] == b"SHARDS":
            reader.feed(b"-ERR unknown subcommand 'SHARDS'. Try CLUSTER HELP.\r\n")
        else:
            reader.feed(b"*1\r\n*3\r\n:0\r\n:16383\r\n*3\r\n$9\r\n127.0.0.1\r\n:7000\r\n$3\r\nid1\r\n")
        return reader.gets()

    router._query = redis6  # type: ignore[method-assign]
    assert await router.refresh()
    assert router.topology_command == "slots" and asked == [b"SHARDS", b"SLOTS"]
    assert router.slots[0] is router.slots[16383] and router.slots[0].address == "127.0.0.1:7000"
    assert router.fast_nodes is router.slots  # the session's fast path sees the new map
    assert await router.refresh()
    assert asked == [b"SHARDS", b"SLOTS", b"SLOTS"]
