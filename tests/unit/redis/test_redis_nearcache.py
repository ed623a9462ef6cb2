"""The near-cache core (sans-IO): byte budget, LRU order, RESP3 invalidation pushes."""

from __future__ import annotations

import pytest

from nexus_fast.config.errors import ConfigError
from nexus_fast.config.load import validate
from nexus_fast.redis.nearcache import ENTRY_OVERHEAD, NearCache
from nexus_fast.redis.protocol import encode_bulk


def push(*keys: bytes | None) -> bytes:
    if keys == (None,):
        return b">2\r\n$10\r\ninvalidate\r\n_\r\n"
    body = b"".join(encode_bulk(k) for k in keys)  # type: ignore[arg-type]
    return b">2\r\n$10\r\ninvalidate\r\n*%d\r\n%s" % (len(keys), body)


def test_hit_miss_and_only_values_kept():
    near = NearCache(10_000, 1_000)
    assert near.get(b"k") is None
    near.fill(b"k", b"$1\r\nv\r\n")
    near.fill(b"nil", b"$-1\r\n")
    near.fill(b"err", b"-WRONGTYPE x\r\n")
    near.fill(b"null3", b"_\r\n")
    assert near.get(b"k") == b"$1\r\nv\r\n" and len(near) == 1
    assert (near.hits, near.misses) == (1, 1)


def test_byte_budget_evicts_least_recently_used():
    value = b"$100\r\n" + b"x" * 100 + b"\r\n"
    size = 2 + len(value) + ENTRY_OVERHEAD
    near = NearCache(size * 3, 10_000)
    for key in (b"k1", b"k2", b"k3"):
        near.fill(key, value)
    near.get(b"k1")  # k2 is now the least recently used
    near.fill(b"k4", value)
    assert set(near.entries) == {b"k1", b"k3", b"k4"} and near.evictions == 1
    assert near.bytes == size * 3 <= near.max_bytes
    near.fill(b"big", b"$20000\r\n" + b"y" * 20000 + b"\r\n")  # above max_item: not kept, nothing evicted
    assert b"big" not in near.entries and near.evictions == 1
    near.fill(b"k1", value)  # replacing an entry does not double-charge it
    assert near.bytes == size * 3


def test_invalidation_pushes():
    near = NearCache(10_000, 1_000)
    for key in (b"a", b"b", b"c"):
        near.fill(key, b"$1\r\nv\r\n")
    assert near.push(push(b"a", b"zz"))
    assert set(near.entries) == {b"b", b"c"} and near.invalidations == 1
    assert near.push(push(None))  # FLUSHALL or tracking table overflow: all may be stale
    assert len(near) == 0 and near.bytes == 0 and near.flushes == 1
    assert not near.push(b">3\r\n$7\r\nmessage\r\n$2\r\nch\r\n$1\r\nx\r\n")  # not an invalidation


@pytest.mark.parametrize("extra", [{"mode": "cluster"}, {"replication_factor": 2}, {"compression": True}])
def test_near_cache_config_refuses_what_it_cannot_keep_correct(extra):
    pool = {"servers": ["127.0.0.1:7001:1", "127.0.0.1:7002:1"], "near_cache": True, **extra}
    with pytest.raises(ConfigError, match="near_cache"):
        validate({"redis": {"pools": {"p": pool}}}, "t")
    config = validate({"redis": {"pools": {"p": {"servers": ["127.0.0.1:7001:1"]}}}}, "t").redis
    assert config is not None and config.pools["p"].near_cache is False  # opt-in
